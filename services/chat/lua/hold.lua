-- Hold a proposed slot for one conversation until the user answers (or the hold expires).
-- KEYS: the holds sets of the slot's calendars
-- ARGV: 1 start, 2 end, 3 conversation, 4 now, 5 expires (epoch s)
-- Returns 1 when held (an earlier hold of this conversation in reach is replaced), 0 when
-- another conversation holds an overlapping slot (nothing is written).
local s, e, conversation, now = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local stale = {}
for i, key in ipairs(KEYS) do
  stale[i] = check_holds(key, s, e, conversation, now)
  if not stale[i] then return 0 end
end
for i, key in ipairs(KEYS) do
  if #stale[i] > 0 then redis.call('ZREM', key, unpack(stale[i])) end
  redis.call('ZADD', key, s, e .. '|' .. conversation .. '|' .. ARGV[5])
  redis.call('EXPIREAT', key, ARGV[5] + 86400)
end
return 1
