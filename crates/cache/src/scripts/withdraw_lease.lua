-- Withdraws an instance's memory lease when it stops gracefully, so that writers do not wait
-- for an instance that has left.
--
-- KEYS[1]  the sorted set of lease holders
-- KEYS[2]  the hash of acknowledgements
-- ARGV[1]  the instance id
--
-- Returns 1 if the instance held a lease.
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
