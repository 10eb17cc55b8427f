-- Book one slot: idempotency, deadline, offer, conflict and hold checks and the write in ONE atomic step.
-- The request: services/booking/scripts.py BookRequest.
-- KEYS[1] idempotency: the command's idempotency hash (write_once.lua)
-- KEYS[2] busy: the calendar's busy set (score start, member `end|booking_id|user_id`)
-- KEYS[3] booking: the booking's JSON
-- KEYS[4] user_bookings: the user's bookings set
-- KEYS[5] user_docs: the user's bookings' JSON by id
-- KEYS[6] offers: the conversation's offers hash (runtime/offers.py)
-- KEYS[7] holds: the calendar's holds set (runtime/offers.py)
-- ARGV[1] fingerprint: the request's fingerprint
-- ARGV[2] attempt: this attempt's token
-- ARGV[3] deadline_ms: the caller's deadline (epoch ms, 0 = none)
-- ARGV[4] ttl_s: how long the idempotency record is kept
-- ARGV[5] result: the result json stored on success
-- ARGV[6] meta: the change meta json stored with it
-- ARGV[7] calendar_id: the calendar
-- ARGV[8] start: the core start (epoch s)
-- ARGV[9] ends: the core end (epoch s)
-- ARGV[10] buffer_before_s: the calendar's buffer before a booking
-- ARGV[11] buffer_after_s: its buffer after
-- ARGV[12] daily_cap: most bookings per local day (0 = none)
-- ARGV[13] day_start: the local day's start (epoch s)
-- ARGV[14] day_end: its end (epoch s)
-- ARGV[15] conversation: the booking conversation (its own holds do not block it)
-- ARGV[16] now: epoch s
-- ARGV[17] booking_id: the new booking's id
-- ARGV[18] user_id: its user
-- ARGV[19] booking_json: the new booking
-- Returns {status, payload, meta, sequence}:
--   created -> result json (also when this very attempt already wrote it: a client retry);
--   replayed -> the stored result of an earlier attempt; existing -> the id of the caller's own
--   booking of this very slot (its key is not among KEYS, so the caller reads it: BookingStore.write);
--   conflict, expired, slot_taken, held, daily_limit, not_offered, offer_expired -> ''
--#include write_once
--#include offers
local reply = answered()
if reply then return reply end
-- only a slot offered in this conversation, and not expired, can be booked
local why = offer_refused(K.offers, A.calendar_id, A.start, A.now)
if why then return refused(why) end

local s, e = tonumber(A.start), tonumber(A.ends)
local before, after = tonumber(A.buffer_before_s), tonumber(A.buffer_after_s)
-- The bookings of one calendar never overlap (this script and reschedule.lua admit none), so
-- their ends rise with their starts: of those starting before s only the latest can reach s.
local rows = redis.call('ZREVRANGEBYSCORE', K.busy, '(' .. s, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
local later = redis.call('ZRANGEBYSCORE', K.busy, s, '(' .. (e + after + before), 'WITHSCORES')
for i = 1, #later do rows[#rows + 1] = later[i] end
for i = 1, #rows, 2 do
  local member, os = rows[i], tonumber(rows[i + 1])
  local oe, oid, ouser = string.match(member, '^(%d+)|([^|]+)|(.*)$')
  oe = tonumber(oe)
  if os < e + after + before and oe + after > s - before then
    -- the same person asking again for the very same slot gets their booking back
    if ouser == A.user_id and os == s and oe == e then
      return {'existing', oid, '', 0}
    end
    return refused('slot_taken')
  end
end

-- a slot another conversation holds while its user decides is not free either
local stale = check_holds(K.holds, s, e, A.conversation, tonumber(A.now))
if not stale then return refused('held') end
if day_full(K.busy, A.day_start, A.day_end, A.daily_cap, nil) then return refused('daily_limit') end

drop_holds(K.holds, stale)
redis.call('ZADD', K.busy, s, e .. '|' .. A.booking_id .. '|' .. A.user_id)
redis.call('SET', K.booking, A.booking_json)
redis.call('ZADD', K.user_bookings, s, A.booking_id)
redis.call('HSET', K.user_docs, A.booking_id, A.booking_json)
return written(0)
