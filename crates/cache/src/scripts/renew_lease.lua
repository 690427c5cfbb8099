-- Renews an instance's memory lease (see src/memory_lease.rs), only if the instance has dropped
-- every value older than the current generation: an instance that stopped hearing
-- invalidations (a subscription dropped silently) loses its lease within one lease length.
--
-- KEYS[1]  the sorted set of lease holders, scored by their lease's end (Redis time, ms), with
--          its marker (see unacknowledged.lua)
-- KEYS[2]  the hash of acknowledgements (instance id -> generation)
-- KEYS[3]  the generation
-- ARGV[1]  the instance id
-- ARGV[2]  the lease length, in milliseconds
-- ARGV[3]  the instance's floor: it holds no value older than this
--
-- Returns 1 if renewed, 0 if refused.
local generation = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if tonumber(ARGV[3]) < generation then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- A set created here (first use, or after a flush or an eviction) is marked, so that writers
-- wait out the leases a lost one may have held.
if not redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf', 'LIMIT', 0, 1)[1] then
  redis.call('ZADD', KEYS[1], '+inf', 'since:' .. now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
