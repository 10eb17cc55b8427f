-- Move a pending action to a new status, once: approve, decline or supersede it.
-- KEYS: 1 the action's hash, 2 its conversation's pending pointer
-- ARGV: 1 action id, 2 user id, 3 conversation id, 4 new status, 5 now (epoch s),
--       6 seconds after which an unfinished 'executing' may be taken over (its chat died)
-- Returns 'ok', or why not: 'missing' (no such action for this user and conversation),
-- 'expired', or the status it already has ('executing', 'done', 'failed', 'declined', ...).
local data = redis.call('HMGET', KEYS[1], 'user_id', 'conversation_id', 'status', 'expires', 'since')
if not data[1] or data[1] ~= ARGV[2] or data[2] ~= ARGV[3] then return 'missing' end
local status, now = data[3], tonumber(ARGV[5])
local stale_executing = status == 'executing' and ARGV[4] == 'executing' and tonumber(data[5]) + tonumber(ARGV[6]) < now
if status ~= 'pending' and not stale_executing then return status end
if tonumber(data[4]) < now then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'since', now)
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return 'expired'
end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'since', now)
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 'ok'
