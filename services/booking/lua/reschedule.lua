-- Move one booking atomically: the new slot is taken and the old one freed in one step, or nothing changes.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset,
--       5 offers hash of the conversation, 6 booking revision counter (iCalendar SEQUENCE),
--       7 holds set of the calendar (shared/holds.py)
-- ARGV: 1 fingerprint, 2 result json, 3 old busy member, 4 new core start, 5 new core end,
--       6 buffer before, 7 buffer after, 8 idempotency ttl, 9 expected current json (as read),
--       10 moved booking json, 11 booking id, 12 user id, 13 cap per day (0 none), 14 day start, 15 day end,
--       16 offer field `calendar|new start`, 17 now (epoch s), 18 change meta json, 19 attempt token,
--       20 conversation id, 21 deadline (epoch ms, 0 = none)
-- Returns {status, payload, meta, sequence}:
--   created | replayed | conflict | expired | changed | not_offered | offer_expired | slot_taken | held | daily_limit
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result', 'meta', 'seq', 'attempt')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', '', '', 0} end
  local status = 'replayed'
  if seen[5] == ARGV[19] then status = 'created' end
  return {status, seen[2], seen[3], tonumber(seen[4])}
end
-- past its caller's deadline (the server's clock, so a late reclaim cannot apply it): nothing changes
if past_deadline(ARGV[21]) then return {'expired', '', '', 0} end
if redis.call('GET', KEYS[3]) ~= ARGV[9] then return {'changed', '', '', 0} end
local expires = redis.call('HGET', KEYS[5], ARGV[16])
if not expires then return {'not_offered', '', '', 0} end
if tonumber(expires) < tonumber(ARGV[17]) then return {'offer_expired', '', '', 0} end

local s, e = tonumber(ARGV[4]), tonumber(ARGV[5])
local before, after = tonumber(ARGV[6]), tonumber(ARGV[7])
-- Bookings of one calendar never overlap, so their ends rise with their starts: of those
-- starting before s only the latest other than this booking can reach s.
local rows = {}
local earlier = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. s, '-inf', 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #earlier, 2 do
  if earlier[i] ~= ARGV[3] then
    rows[1], rows[2] = earlier[i], earlier[i + 1]
    break
  end
end
local later = redis.call('ZRANGEBYSCORE', KEYS[2], s, '(' .. (e + after + before), 'WITHSCORES')
for i = 1, #later do rows[#rows + 1] = later[i] end
for i = 1, #rows, 2 do
  local member, os = rows[i], tonumber(rows[i + 1])
  if member ~= ARGV[3] then
    local oe = tonumber(string.match(member, '^(%d+)|'))
    if os < e + after + before and oe + after > s - before then return {'slot_taken', '', '', 0} end
  end
end
local stale = check_holds(KEYS[7], s, e, ARGV[20], tonumber(ARGV[17]))
if not stale then return {'held', '', '', 0} end
local cap = tonumber(ARGV[13])
if cap > 0 then
  local n = redis.call('ZCOUNT', KEYS[2], ARGV[14], '(' .. ARGV[15])
  local old_start = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if old_start and tonumber(old_start) >= tonumber(ARGV[14]) and tonumber(old_start) < tonumber(ARGV[15]) then n = n - 1 end
  if n >= cap then return {'daily_limit', '', '', 0} end
end

if #stale > 0 then redis.call('ZREM', KEYS[7], unpack(stale)) end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[2], s, e .. '|' .. ARGV[11] .. '|' .. ARGV[12])
redis.call('ZADD', KEYS[4], s, ARGV[11])
redis.call('SET', KEYS[3], ARGV[10])
local seq = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2], 'meta', ARGV[18], 'seq', seq, 'attempt', ARGV[19])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {'created', ARGV[2], ARGV[18], seq}
