-- Create or replace one calendar, with its idempotency record, in ONE atomic step.
-- KEYS: 1 idempotency hash, 2 calendar key, 3 tenant's calendar-id set
-- ARGV: 1 fingerprint, 2 calendar json, 3 calendar id, 4 idempotency ttl (s),
--       5 result json if the calendar is new, 6 result json if it replaced one
-- Returns {status, payload}: created -> result json; replayed -> stored result; conflict -> ''
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', ''} end
  return {'replayed', seen[2]}
end
local result = ARGV[5]
if redis.call('EXISTS', KEYS[2]) == 1 then result = ARGV[6] end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', result)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'created', result}
