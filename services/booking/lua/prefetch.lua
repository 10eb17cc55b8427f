-- Everything a command reads before its write, in one call (read-only).
-- KEYS: 1 idempotency hash, 2 calendar json, 3 external busy zset of the calendar
-- ARGV: 1 lowest start of an external block that may touch the slot, 2 highest (exclusive);
--       both '' when no slot is checked (cancel)
-- Returns {{fp, result, meta, seq}, calendar json or false, {member, score, ...}}
local blocks = {}
if ARGV[1] ~= '' then
  blocks = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
end
return {redis.call('HMGET', KEYS[1], 'fp', 'result', 'meta', 'seq'), redis.call('GET', KEYS[2]), blocks}
