-- Puts a Redis server this process has not seen before (its start, a restart, a failover)
-- back above every generation any instance has seen, before anything in it is trusted; and
-- records when the server, in its current role, was first met by any process.
--
-- KEYS[1]  the generation
-- KEYS[2]  the first meeting's record for this server: its run_id and replication id are in
--          the name, so no restarted, restored or promoted server can find one of its own
-- ARGV[1]  the database's generation mark
-- ARGV[2]  the lease length, in milliseconds
-- ARGV[3]  how long the record is kept, in milliseconds
-- ARGV[4]  the invalidation channel (an argument: a channel is not a key)
--
-- Returns {generation, wait}: the generation, now at least the mark, and how many milliseconds
-- of the lease after that first meeting are left (Redis time). A value from before is not
-- deleted: it no longer matches the generation, so the read script treats it as a miss.
local generation = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', generation))
redis.call('PUBLISH', ARGV[4], string.format('%d', generation))
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[2], string.format('%d', now), 'NX', 'PX', ARGV[3])
local met = tonumber(redis.call('GET', KEYS[2]) or '') or now
local lease = tonumber(ARGV[2])
-- A clock set back since the meeting must not lengthen the wait past one lease.
return {generation, math.min(lease, math.max(0, met + lease - now))}
