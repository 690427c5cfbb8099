-- Takes the computing lease without reading the value, for an early refresh.
--
-- KEYS[1]  the generation
-- KEYS[2]  the computing lease
-- ARGV[1]  a random token naming this request as the lease holder
-- ARGV[2]  the lease's TTL, in milliseconds
--
-- Returns the generation to fill at (decimal text), or false when another request holds it.
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return string.format('%d', tonumber(redis.call('GET', KEYS[1]) or '0') or 0)
end
return false
