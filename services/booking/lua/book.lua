-- Book one slot: idempotency check, conflict check and write in ONE atomic step.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset,
--       5 offers hash of the conversation
-- ARGV: 1 fingerprint, 2 result json (on success), 3 core start, 4 core end,
--       5 buffer before (s), 6 buffer after (s), 7 lookback (s), 8 idempotency ttl (s),
--       9 booking id, 10 user id, 11 booking json, 12 key prefix of bookings (same hash tag),
--       13 max bookings per day (0 = none), 14 local day start, 15 local day end,
--       16 offer field `calendar|start`, 17 now (epoch s)
-- Returns {status, payload}: created|replayed -> result json; existing -> booking json;
--   conflict -> stored fingerprint; slot_taken, daily_limit, not_offered, offer_expired -> ""
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', seen[1]} end
  return {'replayed', seen[2]}
end

-- only a slot offered in this conversation, and not expired, can be booked
local expires = redis.call('HGET', KEYS[5], ARGV[16])
if not expires then return {'not_offered', ''} end
if tonumber(expires) < tonumber(ARGV[17]) then return {'offer_expired', ''} end

local s, e = tonumber(ARGV[3]), tonumber(ARGV[4])
local before, after = tonumber(ARGV[5]), tonumber(ARGV[6])
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], s - tonumber(ARGV[7]), '(' .. (e + after + before), 'WITHSCORES')
for i = 1, #rows, 2 do
  local member, os = rows[i], tonumber(rows[i + 1])
  local oe, oid, ouser = string.match(member, '^(%d+)|([^|]+)|(.*)$')
  oe = tonumber(oe)
  if oe + after > s - before then
    -- the same person asking again for the very same slot gets their booking back
    if ouser == ARGV[10] and os == s and oe == e then
      return {'existing', redis.call('GET', ARGV[12] .. oid)}
    end
    return {'slot_taken', ''}
  end
end

local cap = tonumber(ARGV[13])
if cap > 0 and redis.call('ZCOUNT', KEYS[2], ARGV[14], '(' .. ARGV[15]) >= cap then
  return {'daily_limit', ''}
end

redis.call('ZADD', KEYS[2], s, e .. '|' .. ARGV[9] .. '|' .. ARGV[10])
redis.call('SET', KEYS[3], ARGV[11])
redis.call('ZADD', KEYS[4], s, ARGV[9])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {'created', ARGV[2]}
