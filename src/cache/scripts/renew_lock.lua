-- Extends the computing lease while its holder's aggregate runs, only if it still holds it.
--
-- KEYS[1]  the computing lease
-- ARGV[1]  the holder's token
-- ARGV[2]  the new TTL, in milliseconds
--
-- Returns 1 when extended, 0 when the lease is gone (a write deleted it, or it expired).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
