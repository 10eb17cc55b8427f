-- Book one slot: idempotency check, offer check, conflict check and write in ONE atomic step.
-- KEYS: 1 idempotency hash, 2 calendar busy zset, 3 booking key, 4 user bookings zset,
--       5 offers hash of the conversation, 6 holds set of the calendar (shared/holds.py)
-- ARGV: 1 fingerprint, 2 result json (on success), 3 core start, 4 core end,
--       5 buffer before (s), 6 buffer after (s), 7 idempotency ttl (s),
--       8 booking id, 9 user id, 10 booking json, 11 key prefix of bookings (same hash tag),
--       12 max bookings per day (0 = none), 13 local day start, 14 local day end,
--       15 offer field `calendar|start`, 16 now (epoch s), 17 change meta json, 18 attempt token,
--       19 conversation id, 20 deadline (epoch ms, 0 = none)
-- Returns {status, payload, meta, sequence}:
--   created -> result json (also when this very attempt already wrote it: a client retry);
--   replayed -> the stored result of an earlier attempt; existing -> the caller's booking json;
--   conflict, expired, slot_taken, held, daily_limit, not_offered, offer_expired -> ''
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result', 'meta', 'seq', 'attempt')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', '', '', 0} end
  local status = 'replayed'
  if seen[5] == ARGV[18] then status = 'created' end
  return {status, seen[2], seen[3], tonumber(seen[4])}
end
-- past its caller's deadline (the server's clock, so a late reclaim cannot apply it): nothing changes
if past_deadline(ARGV[20]) then return {'expired', '', '', 0} end

-- only a slot offered in this conversation, and not expired, can be booked
local expires = redis.call('HGET', KEYS[5], ARGV[15])
if not expires then return {'not_offered', '', '', 0} end
if tonumber(expires) < tonumber(ARGV[16]) then return {'offer_expired', '', '', 0} end

local s, e = tonumber(ARGV[3]), tonumber(ARGV[4])
local before, after = tonumber(ARGV[5]), tonumber(ARGV[6])
-- The bookings of one calendar never overlap (this script and reschedule.lua admit none), so
-- their ends rise with their starts: of those starting before s only the latest can reach s.
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. s, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
local later = redis.call('ZRANGEBYSCORE', KEYS[2], s, '(' .. (e + after + before), 'WITHSCORES')
for i = 1, #later do rows[#rows + 1] = later[i] end
for i = 1, #rows, 2 do
  local member, os = rows[i], tonumber(rows[i + 1])
  local oe, oid, ouser = string.match(member, '^(%d+)|([^|]+)|(.*)$')
  oe = tonumber(oe)
  if os < e + after + before and oe + after > s - before then
    -- the same person asking again for the very same slot gets their booking back
    if ouser == ARGV[9] and os == s and oe == e then
      return {'existing', redis.call('GET', ARGV[11] .. oid), '', 0}
    end
    return {'slot_taken', '', '', 0}
  end
end

-- a slot another conversation holds while its user decides is not free either
local stale = check_holds(KEYS[6], s, e, ARGV[19], tonumber(ARGV[16]))
if not stale then return {'held', '', '', 0} end

local cap = tonumber(ARGV[12])
if cap > 0 and redis.call('ZCOUNT', KEYS[2], ARGV[13], '(' .. ARGV[14]) >= cap then
  return {'daily_limit', '', '', 0}
end

if #stale > 0 then redis.call('ZREM', KEYS[6], unpack(stale)) end
redis.call('ZADD', KEYS[2], s, e .. '|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('SET', KEYS[3], ARGV[10])
redis.call('ZADD', KEYS[4], s, ARGV[8])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2], 'meta', ARGV[17], 'seq', 0, 'attempt', ARGV[18])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return {'created', ARGV[2], ARGV[17], 0}
