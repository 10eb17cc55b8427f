-- Replace one source's imported busy blocks of a calendar, with the idempotency record, in ONE
-- atomic step. Members are `end|source:start`; blocks that ended long ago are dropped too.
-- KEYS: 1 idempotency hash, 2 external busy zset
-- ARGV: 1 fingerprint, 2 result json, 3 idempotency ttl (s), 4 source, 5 drop blocks starting
--       before this epoch, 6.. flat pairs: start, end
-- Returns {status, payload}: created -> result json; replayed -> stored result; conflict -> ''
local seen = redis.call('HMGET', KEYS[1], 'fp', 'result')
if seen[1] then
  if seen[1] ~= ARGV[1] then return {'conflict', ''} end
  return {'replayed', seen[2]}
end
local marker = '|' .. ARGV[4] .. ':'
local stale = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.find(member, marker, 1, true) then
    stale[#stale + 1] = member
    if #stale == 500 then
      redis.call('ZREM', KEYS[2], unpack(stale))
      stale = {}
    end
  end
end
if #stale > 0 then redis.call('ZREM', KEYS[2], unpack(stale)) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
local batch = {}
for i = 6, #ARGV, 2 do
  batch[#batch + 1] = ARGV[i]
  batch[#batch + 1] = ARGV[i + 1] .. marker .. ARGV[i]
  if #batch == 1000 then
    redis.call('ZADD', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZADD', KEYS[2], unpack(batch)) end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'created', ARGV[2]}
