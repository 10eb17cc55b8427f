-- The idempotency of the booking writes (book, cancel, reschedule): their requests share the
-- base services/booking/scripts.py WriteOnce, so each has K.idempotency, A.fingerprint,
-- A.attempt, A.deadline_ms, A.ttl_s, A.result and A.meta. Replies: {status, payload, meta, sequence}.
--#include clock
--#include once
-- answered(): the reply to a command whose key was seen before (its first result; `created`
-- again when this very attempt wrote it and its client retried; `conflict` when the key came
-- with another request) or whose deadline has passed (`expired`: nothing changes); nil when
-- the script goes on to its checks and write
local function answered()
  local seen = first_record('meta', 'seq', 'attempt')
  if seen then
    if seen[1] ~= A.fingerprint then return {'conflict', '', '', 0} end
    local status = 'replayed'
    if seen[5] == A.attempt then status = 'created' end
    return {status, seen[2], seen[3], tonumber(seen[4])}
  end
  if past_deadline(A.deadline_ms) then return {'expired', '', '', 0} end
  return nil
end
-- refused(status): the reply of a write that changed nothing
local function refused(status)
  return {status, '', '', 0}
end
-- written(sequence): store the first result under the key, and reply with it
local function written(sequence)
  keep_first(A.result, 'meta', A.meta, 'seq', sequence, 'attempt', A.attempt)
  return {'created', A.result, A.meta, sequence}
end
-- day_full(busy, day_start, day_end, cap, moving): whether the calendar's day already holds
-- `cap` bookings (0 = no cap), not counting `moving` (the busy member of a booking being moved)
local function day_full(busy, day_start, day_end, cap, moving)
  cap = tonumber(cap)
  if cap == 0 then return false end
  local n = redis.call('ZCOUNT', busy, day_start, '(' .. day_end)
  local old_start = moving and redis.call('ZSCORE', busy, moving)
  if old_start and tonumber(old_start) >= tonumber(day_start) and tonumber(old_start) < tonumber(day_end) then
    n = n - 1
  end
  return n >= cap
end
