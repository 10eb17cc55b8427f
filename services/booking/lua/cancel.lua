-- Cancel one booking atomically: idempotency, ownership and state checked with the write.
-- The request: services/booking/scripts.py CancelRequest.
-- KEYS[1] idempotency: the command's idempotency hash (write_once.lua)
-- KEYS[2] busy: the calendar's busy set
-- KEYS[3] booking: the booking's JSON
-- KEYS[4] user_bookings: the user's bookings set
-- KEYS[5] user_docs: the user's bookings' JSON by id
-- KEYS[6] revision: the booking's revision counter (iCalendar SEQUENCE)
-- ARGV[1] fingerprint: the request's fingerprint
-- ARGV[2] attempt: this attempt's token
-- ARGV[3] deadline_ms: the caller's deadline (epoch ms, 0 = none)
-- ARGV[4] ttl_s: how long the idempotency record is kept
-- ARGV[5] result: the result json stored on success
-- ARGV[6] meta: the change meta json stored with it
-- ARGV[7] booking_id: the booking's id
-- ARGV[8] old_member: the booking's busy member
-- ARGV[9] expected: the booking's current json, as the caller read it (from their own bookings)
-- ARGV[10] cancelled: the cancelled booking's json
-- Returns {status, payload, meta, sequence}: created | replayed | conflict | expired | changed
--#include write_once
local reply = answered()
if reply then return reply end
if redis.call('GET', K.booking) ~= A.expected then return refused('changed') end
redis.call('ZREM', K.busy, A.old_member)
redis.call('ZREM', K.user_bookings, A.booking_id)
redis.call('HDEL', K.user_docs, A.booking_id)
redis.call('SET', K.booking, A.cancelled)
return written(redis.call('INCR', K.revision))
