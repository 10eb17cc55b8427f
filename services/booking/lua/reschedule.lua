-- Move one booking atomically: the new slot is taken and the old one freed in one step, or nothing changes.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset,
--       5 offers hash of the conversation
-- ARGV: 1 fingerprint, 2 result json, 3 old busy member, 4 new core start, 5 new core end,
--       6 buffer before, 7 buffer after, 8 lookback, 9 idempotency ttl, 10 expected current json,
--       11 moved booking json, 12 booking id, 13 user id, 14 cap per day (0 none), 15 day start, 16 day end,
--       17 offer field `calendar|new start`, 18 now (epoch s)
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', seen[1]} end
  return {'replayed', seen[2]}
end
if redis.call('GET', KEYS[3]) ~= ARGV[10] then return {'changed', ''} end
local expires = redis.call('HGET', KEYS[5], ARGV[17])
if not expires then return {'not_offered', ''} end
if tonumber(expires) < tonumber(ARGV[18]) then return {'offer_expired', ''} end

local s, e = tonumber(ARGV[4]), tonumber(ARGV[5])
local before, after = tonumber(ARGV[6]), tonumber(ARGV[7])
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], s - tonumber(ARGV[8]), '(' .. (e + after + before))
for _, member in ipairs(rows) do
  if member ~= ARGV[3] then
    local oe = tonumber(string.match(member, '^(%d+)|'))
    if oe + after > s - before then return {'slot_taken', ''} end
  end
end
local cap = tonumber(ARGV[14])
if cap > 0 then
  local n = redis.call('ZCOUNT', KEYS[2], ARGV[15], '(' .. ARGV[16])
  local old_start = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if old_start and tonumber(old_start) >= tonumber(ARGV[15]) and tonumber(old_start) < tonumber(ARGV[16]) then n = n - 1 end
  if n >= cap then return {'daily_limit', ''} end
end

redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[2], s, e .. '|' .. ARGV[12] .. '|' .. ARGV[13])
redis.call('ZADD', KEYS[4], s, ARGV[12])
redis.call('SET', KEYS[3], ARGV[11])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[9])
return {'created', ARGV[2]}
