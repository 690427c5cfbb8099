-- The prelude of the scripts that may claim the keys for this process' database (inspect.lua,
-- invalidate.lua), loaded in front of each of them (src/scripts.rs), so that both decide
-- ownership the same way.
--
-- KEYS[2]  the owner
-- ARGV[1]  this process' database identity
-- ARGV[2]  '1' if this process may claim keys that nobody owns (a server), '0' if not (a
--          command, which may be pointed at the wrong Redis)
--
-- Returns {'not_ours', owner} ('' when nobody owns them and this process may not claim them)
-- before the script proper runs; otherwise falls through to it.
local owner = redis.call('GET', KEYS[2])
if not owner and ARGV[2] == '1' then
  redis.call('SET', KEYS[2], ARGV[1])
  owner = ARGV[1]
end
if owner ~= ARGV[1] then return {'not_ours', owner or ''} end
