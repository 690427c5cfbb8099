-- Stores a computed value only if the generation is still the one read before the query
-- (no write was announced since), then releases the lease if this request still holds it.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the value's computing lease
-- ARGV[1]  the generation read before the query ran
-- ARGV[2]  the value (an envelope carrying that generation and this database's identity), or
--          '' to release the lease without storing (a result not worth keeping)
-- ARGV[3]  its TTL, in milliseconds
-- ARGV[4]  the lease as held
--
-- Returns 1 if the value was stored, 0 if not.
local stored = 0
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '') == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return stored
