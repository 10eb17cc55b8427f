-- Move one booking atomically: the new slot is taken and the old one freed in one step, or nothing changes.
-- The request: services/booking/scripts.py RescheduleRequest.
-- KEYS[1] idempotency: the command's idempotency hash (write_once.lua)
-- KEYS[2] busy: the calendar's busy set (score start, member `end|booking_id|user_id`)
-- KEYS[3] booking: the booking's JSON
-- KEYS[4] user_bookings: the user's bookings set
-- KEYS[5] user_docs: the user's bookings' JSON by id
-- KEYS[6] offers: the conversation's offers hash (runtime/offers.py)
-- KEYS[7] holds: the calendar's holds set (runtime/offers.py)
-- KEYS[8] revision: the booking's revision counter (iCalendar SEQUENCE)
-- ARGV[1] fingerprint: the request's fingerprint
-- ARGV[2] attempt: this attempt's token
-- ARGV[3] deadline_ms: the caller's deadline (epoch ms, 0 = none)
-- ARGV[4] ttl_s: how long the idempotency record is kept
-- ARGV[5] result: the result json stored on success
-- ARGV[6] meta: the change meta json stored with it
-- ARGV[7] calendar_id: the calendar
-- ARGV[8] start: the new core start (epoch s)
-- ARGV[9] ends: the new core end (epoch s)
-- ARGV[10] buffer_before_s: the calendar's buffer before a booking
-- ARGV[11] buffer_after_s: its buffer after
-- ARGV[12] daily_cap: most bookings per local day (0 = none)
-- ARGV[13] day_start: the new local day's start (epoch s)
-- ARGV[14] day_end: its end (epoch s)
-- ARGV[15] conversation: the moving conversation (its own holds do not block it)
-- ARGV[16] now: epoch s
-- ARGV[17] booking_id: the booking's id
-- ARGV[18] user_id: its user
-- ARGV[19] old_member: the booking's current busy member
-- ARGV[20] expected: the booking's current json, as the caller read it
-- ARGV[21] moved: the moved booking's json
-- Returns {status, payload, meta, sequence}:
--   created | replayed | conflict | expired | changed | not_offered | offer_expired | slot_taken | held | daily_limit
--#include write_once
--#include offers
local reply = answered()
if reply then return reply end
if redis.call('GET', K.booking) ~= A.expected then return refused('changed') end
local why = offer_refused(K.offers, A.calendar_id, A.start, A.now)
if why then return refused(why) end

local s, e = tonumber(A.start), tonumber(A.ends)
local before, after = tonumber(A.buffer_before_s), tonumber(A.buffer_after_s)
-- Bookings of one calendar never overlap, so their ends rise with their starts: of those
-- starting before s only the latest other than this booking can reach s.
local rows = {}
local earlier = redis.call('ZREVRANGEBYSCORE', K.busy, '(' .. s, '-inf', 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #earlier, 2 do
  if earlier[i] ~= A.old_member then
    rows[1], rows[2] = earlier[i], earlier[i + 1]
    break
  end
end
local later = redis.call('ZRANGEBYSCORE', K.busy, s, '(' .. (e + after + before), 'WITHSCORES')
for i = 1, #later do rows[#rows + 1] = later[i] end
for i = 1, #rows, 2 do
  local member, os = rows[i], tonumber(rows[i + 1])
  if member ~= A.old_member then
    local oe = tonumber(string.match(member, '^(%d+)|'))
    if os < e + after + before and oe + after > s - before then return refused('slot_taken') end
  end
end
local stale = check_holds(K.holds, s, e, A.conversation, tonumber(A.now))
if not stale then return refused('held') end
if day_full(K.busy, A.day_start, A.day_end, A.daily_cap, A.old_member) then return refused('daily_limit') end

drop_holds(K.holds, stale)
redis.call('ZREM', K.busy, A.old_member)
redis.call('ZADD', K.busy, s, e .. '|' .. A.booking_id .. '|' .. A.user_id)
redis.call('ZADD', K.user_bookings, s, A.booking_id)
redis.call('SET', K.booking, A.moved)
redis.call('HSET', K.user_docs, A.booking_id, A.moved)
return written(redis.call('INCR', K.revision))
