-- Takes the computing lease without reading the value, for an early refresh, or to replace a
-- value at the current generation whose payload does not parse.
--
-- KEYS[1]  the generation
-- KEYS[2]  the value's computing lease
-- ARGV[1]  a random token naming this request
-- ARGV[2]  the lease's TTL, in milliseconds
--
-- Returns {generation, holder} (decimal text, and the lease as held), or false when another
-- request holds the lease at this generation or the generation is missing (Redis lost it: the
-- read script repairs that first). A lease taken at an older generation is taken over, as in
-- read_or_lease.lua.
local generation = tonumber(redis.call('GET', KEYS[1]) or '')
if not generation then return false end
local current = string.format('%d', generation)
local held = redis.call('GET', KEYS[2])
if held and string.match(held, '^(%d+):') == current then return false end
local holder = current .. ':' .. ARGV[1]
redis.call('SET', KEYS[2], holder, 'PX', ARGV[2])
return {current, holder}
