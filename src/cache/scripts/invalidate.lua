-- Invalidates the value after a data change committed.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the computing lease
-- KEYS[4]  the invalidation channel
-- ARGV[1]  the database's generation mark, read after the change committed
--
-- Raises the generation to at least the mark (never lowers it), deletes the value and the
-- lease, announces the generation, and returns it. The generation follows the database's mark
-- instead of counting by itself, so that a Redis which lost data can be put back above every
-- generation it ever held (see src/cache/generation.rs).
local generation = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') or 0, tonumber(ARGV[1]))
redis.call('SET', KEYS[2], string.format('%d', generation))
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('PUBLISH', KEYS[4], string.format('%d', generation))
return generation
