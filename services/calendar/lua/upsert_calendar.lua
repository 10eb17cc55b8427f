-- Create or replace one calendar, with its idempotency record, in ONE atomic step.
-- The request: services/calendar/store.py UpsertCalendar.
-- KEYS[1] idempotency: the command's idempotency hash
-- KEYS[2] calendar: the calendar's json
-- KEYS[3] calendars: the tenant's calendar-id set
-- ARGV[1] fingerprint: the request's fingerprint
-- ARGV[2] calendar_json: the calendar
-- ARGV[3] calendar_id: its id
-- ARGV[4] ttl_s: how long the idempotency record is kept
-- ARGV[5] if_created: the result json if the calendar is new
-- ARGV[6] if_replaced: the result json if it replaced one
-- Returns {status, payload}: created -> result json; replayed -> stored result; conflict -> ''
--#include once
local seen = first_record()
if seen then
  if seen[1] ~= A.fingerprint then return {'conflict', ''} end
  return {'replayed', seen[2]}
end
local result = A.if_created
if redis.call('EXISTS', K.calendar) == 1 then result = A.if_replaced end
redis.call('SET', K.calendar, A.calendar_json)
redis.call('SADD', K.calendars, A.calendar_id)
keep_first(result)
return {'created', result}
