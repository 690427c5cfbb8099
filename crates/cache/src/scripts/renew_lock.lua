-- Extends the computing lease while its holder's query runs, only if it still holds it.
--
-- KEYS[1]  the value's computing lease
-- ARGV[1]  the lease as held ('<generation>:<token>')
-- ARGV[2]  the new TTL, in milliseconds
--
-- Returns 1 when extended, 0 when the lease is gone (it expired, or a reader took it over after
-- an invalidation).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
