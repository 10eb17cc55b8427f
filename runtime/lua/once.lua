-- The idempotency record of a write that runs once per key, shared by every such script (the
-- calendar admin's, and the booking writes through write_once): one hash per key holding the
-- request's fingerprint and its first result. The script's request has K.idempotency,
-- A.fingerprint and A.ttl_s.
-- first_record(...): {fingerprint, result, <the named extra fields>} stored under the key, or
-- nil when the key is new
local function first_record(...)
  local seen = redis.call('HMGET', K.idempotency, 'fp', 'result', ...)
  if seen[1] then return seen end
  return nil
end
-- keep_first(result, ...): store the first result (and extra field, value pairs) under the key
local function keep_first(result, ...)
  redis.call('HSET', K.idempotency, 'fp', A.fingerprint, 'result', result, ...)
  redis.call('EXPIRE', K.idempotency, A.ttl_s)
end
