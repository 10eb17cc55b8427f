-- Give up a running request's claim on its Idempotency-Key after a failure, so that a retry
-- runs again; never the claim of another attempt that took over a lost lease.
-- The request: services/chat/replay.py ReleaseLease.
-- KEYS[1] record: the request's record
-- ARGV[1] owned: the record as its owner wrote it
-- Returns 1 when released, 0 when it was not (or no longer) this owner's.
if redis.call('GET', K.record) == A.owned then
  return redis.call('DEL', K.record)
end
return 0
