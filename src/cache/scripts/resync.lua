-- Puts a Redis server this process has not seen before (its start, a restart, a failover)
-- back above every generation any instance has seen, before anything in it is trusted.
--
-- KEYS[1]  the generation
-- KEYS[2]  the invalidation channel
-- ARGV[1]  the database's generation mark
--
-- Returns the generation, now at least the mark. A value from before is not deleted: it no
-- longer matches the generation, so the read script treats it as a miss.
local generation = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', generation))
redis.call('PUBLISH', KEYS[2], string.format('%d', generation))
return generation
