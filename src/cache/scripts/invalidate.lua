-- Invalidates the value after a data change committed.
--
-- KEYS[1]  the value
-- KEYS[2]  the generation
-- KEYS[3]  the computing lease
-- KEYS[4]  the invalidation channel
-- KEYS[5]  the owner
-- ARGV[1]  the database's generation mark, read after the change committed
-- ARGV[2]  this process' database identity
-- ARGV[3]  '1' if this process may claim keys that nobody owns (a server), '0' if not (a
--          command, which may be pointed at the wrong Redis)
--
-- Raises the generation to at least the mark (never lowers it), deletes the value and the
-- lease, announces the generation, and returns {'ok', generation, generation before}. The
-- generation follows the database's mark instead of counting by itself, so that a Redis which
-- lost data can be put back above every generation it ever held (see src/cache/generation.rs).
--
-- Touches nothing and returns {'not_ours', owner} when the keys belong to another database, or
-- to nobody and this process may not claim them: the caller keeps its outbox row.
local owner = redis.call('GET', KEYS[5])
if not owner and ARGV[3] == '1' then
  redis.call('SET', KEYS[5], ARGV[2])
  owner = ARGV[2]
end
if owner ~= ARGV[2] then return {'not_ours', owner or ''} end
local before = tonumber(redis.call('GET', KEYS[2]) or '') or 0
local generation = math.max(before, tonumber(ARGV[1]))
redis.call('SET', KEYS[2], string.format('%d', generation))
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('PUBLISH', KEYS[4], string.format('%d', generation))
return {'ok', string.format('%d', generation), string.format('%d', before)}
