-- The read path's one round trip: the value if it is current, else the computing lease.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the value's computing lease
-- ARGV[1]  a random token naming this request
-- ARGV[2]  the lease's TTL, in milliseconds
-- ARGV[3]  this instance's floor: the highest generation it has seen announced
-- ARGV[4]  this instance's database identity (see src/owner.rs)
--
-- Returns {'hit', value, pttl}, {'lead', generation, foreign, holder} (this request holds the
-- lease, as `holder`, and must compute the value; foreign is '1' when the value there came from
-- another database), {'wait', generation} (another request holds it), {'resync'} (the
-- generation is missing or below the floor: Redis lost it, by a flush, an eviction or a hand,
-- and it must be raised to the database's mark before anything here is trusted).
--
-- A value counts only if it is an envelope this application wrote from this database at the
-- current generation (src/envelope.rs); the payload inside is not looked at. Anything
-- else (a value typed by hand, written by an older release or from another database) is a
-- miss under the lease, so that one query replaces it.
--
-- The lease names the generation it was taken at ('<generation>:<token>'). One taken before
-- the last invalidation is for a value that would be refused: it is taken over at once, so a
-- write never makes readers wait for a query that is already useless. (The invalidation cannot
-- delete it: it does not know which values are cached.)
local function written_by_this_application(stored, generation)
  return type(stored) == 'table'
    and stored.generation == generation
    and type(stored.database) == 'string'
    and stored.payload ~= nil
end

local generation = tonumber(redis.call('GET', KEYS[2]) or '')
if not generation or generation < tonumber(ARGV[3]) then return {'resync'} end
local current = string.format('%d', generation)
local foreign = '0'
local value = redis.call('GET', KEYS[1])
if value then
  local ok, stored = pcall(cjson.decode, value)
  if ok and written_by_this_application(stored, generation) then
    if stored.database == ARGV[4] then
      return {'hit', value, tostring(redis.call('PTTL', KEYS[1]))}
    end
    foreign = '1'
  end
end
local held = redis.call('GET', KEYS[3])
if held and string.match(held, '^(%d+):') == current then
  return {'wait', current}
end
local holder = current .. ':' .. ARGV[1]
redis.call('SET', KEYS[3], holder, 'PX', ARGV[2])
return {'lead', current, foreign, holder}
