-- Give up a running request's claim on its Idempotency-Key after a failure, so that a retry
-- runs again; never the claim of another attempt that took over a lost lease.
-- KEYS: 1 the request's record   ARGV: 1 the record as its owner wrote it
-- Returns 1 when released, 0 when it was not (or no longer) this owner's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
