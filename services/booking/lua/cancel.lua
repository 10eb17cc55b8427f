-- Cancel one booking atomically: idempotency, ownership and state checked with the write.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset
-- ARGV: 1 fingerprint, 2 result json, 3 busy member of the booking, 4 idempotency ttl,
--       5 expected current booking json, 6 cancelled booking json, 7 booking id
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', seen[1]} end
  return {'replayed', seen[2]}
end
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {'changed', ''} end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[7])
redis.call('SET', KEYS[3], ARGV[6])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'created', ARGV[2]}
