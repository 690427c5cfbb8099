-- Counts the lease holders that have not yet acknowledged a generation, forgetting those whose
-- lease has ended (by Redis' clock).
--
-- KEYS[1]  the sorted set of lease holders, scored by their lease's end (Redis time, ms)
-- KEYS[2]  the hash of acknowledgements (instance id -> generation)
-- ARGV[1]  the generation a writer waits for
--
-- Returns how many live lease holders have acknowledged less than ARGV[1].
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local waiting = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if (tonumber(redis.call('HGET', KEYS[2], id) or '0') or 0) < tonumber(ARGV[1]) then
    waiting = waiting + 1
  end
end
return waiting
