-- Everything a command reads before its write, in one call (read-only).
-- The request: services/booking/scripts.py Prefetch.
-- KEYS[1] idempotency: the command's idempotency hash
-- KEYS[2] calendar: the calendar's json
-- KEYS[3] external: the calendar's imported busy set
-- ARGV[1] lo: lowest start of an external block that may touch the slot ('' when no slot is checked)
-- ARGV[2] hi: highest start (exclusive; '' likewise)
-- Returns {{fp, result, meta, seq}, calendar json or false, {member, score, ...}}
local blocks = {}
if A.lo ~= '' then
  blocks = redis.call('ZRANGEBYSCORE', K.external, A.lo, '(' .. A.hi, 'WITHSCORES')
end
return {redis.call('HMGET', K.idempotency, 'fp', 'result', 'meta', 'seq'), redis.call('GET', K.calendar), blocks}
