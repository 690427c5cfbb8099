-- Takes the computing lease without reading the value, for an early refresh.
--
-- KEYS[1]  the generation
-- KEYS[2]  the computing lease
-- ARGV[1]  a random token naming this request as the lease holder
-- ARGV[2]  the lease's TTL, in milliseconds
--
-- Returns the generation to fill at (decimal text), or false when another request holds the
-- lease or the generation is missing (Redis lost it: the read script repairs that first).
local generation = tonumber(redis.call('GET', KEYS[1]) or '')
if not generation then return false end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return string.format('%d', generation)
end
return false
