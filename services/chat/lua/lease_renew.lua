-- Extend a running request's lease on its Idempotency-Key, only while it still holds it.
-- KEYS: 1 the request's record   ARGV: 1 the record as its owner wrote it, 2 lease (ms)
-- Returns 1 when extended, 0 when the record is gone or another attempt's (the lease was lost).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
