-- What the outbox worker checks every round: whose keys these are, and the generation.
--
-- KEYS[1]  the generation
-- KEYS[2]  the owner
-- ARGV[1]  this process' database identity
-- ARGV[2]  '1' if this process may claim keys that nobody owns (a server), '0' if not
--
-- Returns {'ours', generation} (the generation is -1 when missing), or {'not_ours', owner}
-- ('' when nobody owns them and this process may not claim them).
local owner = redis.call('GET', KEYS[2])
if not owner and ARGV[2] == '1' then
  redis.call('SET', KEYS[2], ARGV[1])
  owner = ARGV[1]
end
if owner ~= ARGV[1] then return {'not_ours', owner or ''} end
local generation = tonumber(redis.call('GET', KEYS[1]) or '')
return {'ours', string.format('%d', generation or -1)}
