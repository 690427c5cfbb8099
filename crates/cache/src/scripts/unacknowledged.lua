-- Counts the lease holders that have not yet acknowledged a generation, forgetting those whose
-- lease has ended (by Redis' clock), and says how long a lost table may still hide leases.
--
-- KEYS[1]  the sorted set of lease holders, scored by their lease's end (Redis time, ms), and
--          one marker member `since:<ms>` scored +inf: when the set was created
-- KEYS[2]  the hash of acknowledgements (instance id -> generation)
-- ARGV[1]  the generation a writer waits for
-- ARGV[2]  the lease length, in milliseconds
--
-- Returns {waiting, left}: how many live lease holders have acknowledged less than ARGV[1], and
-- how many milliseconds are left of the first lease since the set was created. A set that a
-- flush or an eviction deleted took its holders with it; those leases still run for up to a
-- lease after the loss, so a writer waits that out (see src/memory_lease.rs).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since
local marker = redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf', 'LIMIT', 0, 1)[1]
if marker then
  since = tonumber(string.sub(marker, 7)) or now
else
  since = now
  redis.call('ZADD', KEYS[1], '+inf', 'since:' .. now)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local waiting = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf')) do
  if (tonumber(redis.call('HGET', KEYS[2], id) or '0') or 0) < tonumber(ARGV[1]) then
    waiting = waiting + 1
  end
end
local lease = tonumber(ARGV[2])
-- A clock set back since the marker was made must not lengthen the wait past one lease.
return {waiting, math.min(lease, math.max(0, since + lease - now))}
