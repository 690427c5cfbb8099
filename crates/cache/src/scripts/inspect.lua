-- What the outbox worker checks every round: whose keys these are, and the generation.
-- Runs after owner_check.lua.
--
-- KEYS[1]  the generation
-- KEYS[2]  the owner
-- ARGV[1]  this process' database identity
-- ARGV[2]  '1' if this process may claim keys that nobody owns, '0' if not
--
-- Returns {'ours', generation} (the generation is -1 when missing), or owner_check.lua's
-- {'not_ours', owner}.
local generation = tonumber(redis.call('GET', KEYS[1]) or '')
return {'ours', string.format('%d', generation or -1)}
