-- Cancel one booking atomically: idempotency, ownership and state checked with the write.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset,
--       5 booking revision counter (iCalendar SEQUENCE)
-- ARGV: 1 fingerprint, 2 result json, 3 busy member of the booking, 4 idempotency ttl,
--       5 expected current booking json (read from the caller's own bookings), 6 cancelled booking json,
--       7 booking id, 8 change meta json, 9 attempt token, 10 deadline (epoch ms, 0 = none)
-- Returns {status, payload, meta, sequence}: created | replayed | conflict | expired | changed
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result', 'meta', 'seq', 'attempt')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', '', '', 0} end
  local status = 'replayed'
  if seen[5] == ARGV[9] then status = 'created' end
  return {status, seen[2], seen[3], tonumber(seen[4])}
end
-- past its caller's deadline (the server's clock, so a late reclaim cannot apply it): nothing changes
if past_deadline(ARGV[10]) then return {'expired', '', '', 0} end
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {'changed', '', '', 0} end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[7])
redis.call('SET', KEYS[3], ARGV[6])
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2], 'meta', ARGV[8], 'seq', seq, 'attempt', ARGV[9])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'created', ARGV[2], ARGV[8], seq}
