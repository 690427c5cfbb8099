-- Invalidates every cached value after a data change committed.
--
-- KEYS[1]  the generation
-- KEYS[2]  the owner
-- ARGV[1]  this process' database identity
-- ARGV[2]  '1' if this process may claim keys that nobody owns (a server), '0' if not (a
--          command, which may be pointed at the wrong Redis)
-- ARGV[3]  the database's generation mark, read after the change committed
-- ARGV[4]  the invalidation channel (an argument, not a key: a channel is not a key, and in a
--          cluster it has no slot)
--
-- Raises the generation to at least the mark (never lowers it), announces it, and returns
-- {'ok', generation, generation before}. Every value and lease carries the generation it was
-- computed or taken at, so raising the generation is what makes all of them old at once: the
-- read script treats an older value as absent and an older lease as free. The generation
-- follows the database's mark instead of counting by itself, so that a Redis which lost data
-- can be put back above every generation it ever held (see src/generation.rs).
--
-- Runs after owner_check.lua: touches nothing and returns {'not_ours', owner} when the keys
-- belong to another database, or to nobody and this process may not claim them; the caller
-- then keeps its outbox row.
local before = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local generation = math.max(before, tonumber(ARGV[3]))
redis.call('SET', KEYS[1], string.format('%d', generation))
redis.call('PUBLISH', ARGV[4], string.format('%d', generation))
return {'ok', string.format('%d', generation), string.format('%d', before)}
