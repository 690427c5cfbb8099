-- The read path's one round trip: the value if it is current, else the computing lease.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the computing lease
-- ARGV[1]  a random token naming this request as the lease holder
-- ARGV[2]  the lease's TTL, in milliseconds
-- ARGV[3]  this instance's floor: the highest generation it has seen announced
-- ARGV[4]  this instance's database identity (see src/cache/owner.rs)
--
-- Returns {'hit', value, pttl}, {'lead', generation, foreign} (this request holds the lease and
-- must compute the value; foreign is '1' when the value there came from another database),
-- {'wait', generation} (another request holds it), {'resync'} (the generation is missing or
-- below the floor: Redis lost it, by a flush, an eviction or a hand, and it must be raised to
-- the database's mark before anything here is trusted).
--
-- A value counts only if it is JSON this application wrote from this database at the current
-- generation. Anything else (a value typed by hand, written by an older release or from
-- another database) is a miss under the lease, so that one aggregate replaces it.
local function written_by_this_application(stored, generation)
  return type(stored) == 'table'
    and stored.generation == generation
    and type(stored.database) == 'string'
    and type(stored.student_count) == 'number'
    and (stored.average_age == cjson.null or type(stored.average_age) == 'number')
    and type(stored.ages) == 'table'
end

local generation = tonumber(redis.call('GET', KEYS[2]) or '')
if not generation or generation < tonumber(ARGV[3]) then return {'resync'} end
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
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'lead', string.format('%d', generation), foreign}
end
return {'wait', string.format('%d', generation)}
