-- Everything a command reads before its write, in one call (read-only).
-- The request: services/booking/scripts.py Prefetch.
-- KEYS[1] idempotency: the command's idempotency hash
-- KEYS[2] calendar: the calendar's json
-- KEYS[3] external: the calendar's imported busy set
-- KEYS[4] offers: the conversation's offers hash
-- ARGV[1] ref: the offer reference the command names ('' when none)
-- ARGV[2] start: the slot's start (epoch s) when the command gives it without a reference ('' when
--   no slot is checked); with a reference, the offered start is used
-- ARGV[3] before_s: how far before the start an external block may begin and still touch the slot
-- ARGV[4] after_s: how far after the start likewise (exclusive)
-- Returns {{fp, result, meta, seq}, calendar json or false, {member, score, ...}, offer field or false}
--#include offers
local offer, start = false, A.start
if A.ref ~= '' then offer, start = offered_ref(K.offers, A.ref) end
local blocks = {}
if start ~= '' then
  local at = tonumber(start)
  blocks = redis.call('ZRANGEBYSCORE', K.external, at - tonumber(A.before_s), '(' .. (at + tonumber(A.after_s)),
    'WITHSCORES')
end
return {redis.call('HMGET', K.idempotency, 'fp', 'result', 'meta', 'seq'), redis.call('GET', K.calendar), blocks,
  offer}
