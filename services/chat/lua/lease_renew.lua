-- Extend a running request's lease on its Idempotency-Key, only while it still holds it.
-- The request: services/chat/replay.py RenewLease.
-- KEYS[1] record: the request's record
-- ARGV[1] owned: the record as its owner wrote it
-- ARGV[2] lease_ms: the lease (ms)
-- Returns 1 when extended, 0 when the record is gone or another attempt's (the lease was lost).
if redis.call('GET', K.record) == A.owned then
  return redis.call('PEXPIRE', K.record, A.lease_ms)
end
return 0
