-- Publishes one instance's figures for the staff cache page, in one hash for every instance
-- (one key, so one cluster slot, whatever the number of instances), and forgets the figures of
-- instances that no longer hold a memory lease: a killed instance never removes its own.
--
-- KEYS[1]  the hash of figures (instance id -> JSON)
-- KEYS[2]  the sorted set of lease holders (see unacknowledged.lua)
-- ARGV[1]  this instance's id
-- ARGV[2]  its figures, JSON
-- ARGV[3]  how long the hash outlives the last instance to publish, in milliseconds
--
-- Returns the number of figures forgotten.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local forgotten = 0
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if id ~= ARGV[1] and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HDEL', KEYS[1], id)
    forgotten = forgotten + 1
  end
end
return forgotten
