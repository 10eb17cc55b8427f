-- Replace one source's imported busy blocks of a calendar, with the idempotency record, in ONE
-- atomic step. Members are `end|source:start`; blocks that ended long ago are dropped too.
-- The request: services/calendar/store.py ImportBusy.
-- KEYS[1] idempotency: the command's idempotency hash
-- KEYS[2] external: the calendar's imported busy set
-- ARGV[1] fingerprint: the request's fingerprint
-- ARGV[2] result: the result json
-- ARGV[3] ttl_s: how long the idempotency record is kept
-- ARGV[4] source: the source whose blocks are replaced
-- ARGV[5] drop_before: blocks starting before this epoch are dropped
-- ARGV[6..] blocks: flat pairs: start, end
-- Returns {status, payload}: created -> result json; replayed -> stored result; conflict -> ''
--#include once
local seen = first_record()
if seen then
  if seen[1] ~= A.fingerprint then return {'conflict', ''} end
  return {'replayed', seen[2]}
end
local marker = '|' .. A.source .. ':'
local stale = {}
for _, member in ipairs(redis.call('ZRANGE', K.external, 0, -1)) do
  if string.find(member, marker, 1, true) then
    stale[#stale + 1] = member
    if #stale == 500 then
      redis.call('ZREM', K.external, unpack(stale))
      stale = {}
    end
  end
end
if #stale > 0 then redis.call('ZREM', K.external, unpack(stale)) end
redis.call('ZREMRANGEBYSCORE', K.external, '-inf', '(' .. A.drop_before)
local batch = {}
for i = 6, #ARGV, 2 do
  batch[#batch + 1] = ARGV[i]
  batch[#batch + 1] = ARGV[i + 1] .. marker .. ARGV[i]
  if #batch == 1000 then
    redis.call('ZADD', K.external, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZADD', K.external, unpack(batch)) end
keep_first(A.result)
return {'created', A.result}
