-- The read path's one round trip: the value if it is current, else the computing lease.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the computing lease
-- ARGV[1]  a random token naming this request as the lease holder
-- ARGV[2]  the lease's TTL, in milliseconds
-- ARGV[3]  this instance's floor: the highest generation it has seen announced
--
-- Returns {'hit', value, pttl}, {'lead', generation} (this request holds the lease and must
-- compute the value) or {'wait', generation} (another request holds it).
--
-- A value counts only if it is JSON this application wrote at the current generation, and
-- that generation is not below the floor. Anything else (a value typed by hand, written by an
-- older release, restored from an older snapshot) is a miss under the lease, so that one
-- aggregate replaces it.
local function written_by_this_application(stored, generation)
  return type(stored) == 'table'
    and stored.generation == generation
    and type(stored.student_count) == 'number'
    and (stored.average_age == cjson.null or type(stored.average_age) == 'number')
    and type(stored.ages) == 'table'
end

local generation = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local value = redis.call('GET', KEYS[1])
if value and generation >= tonumber(ARGV[3]) then
  local ok, stored = pcall(cjson.decode, value)
  if ok and written_by_this_application(stored, generation) then
    return {'hit', value, tostring(redis.call('PTTL', KEYS[1]))}
  end
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'lead', string.format('%d', generation)}
end
return {'wait', string.format('%d', generation)}
