-- Move a pending action to a new status, once: approve, decline or supersede it.
-- The request: services/chat/approvals.py MoveAction.
-- KEYS[1] action: the action's hash
-- KEYS[2] pending: its conversation's pending pointer
-- ARGV[1] action_id: the action's id
-- ARGV[2] user_id: the asking user
-- ARGV[3] conversation_id: the asking conversation
-- ARGV[4] status: the new status
-- ARGV[5] now: epoch s
-- ARGV[6] takeover_s: seconds after which an unfinished 'executing' may be taken over (its chat died)
-- Returns 'ok', or why not: 'missing' (no such action for this user and conversation),
-- 'expired', or the status it already has ('executing', 'done', 'failed', 'declined', ...).
local data = redis.call('HMGET', K.action, 'user_id', 'conversation_id', 'status', 'expires', 'since')
if not data[1] or data[1] ~= A.user_id or data[2] ~= A.conversation_id then return 'missing' end
local status, now = data[3], tonumber(A.now)
local stale_executing = status == 'executing' and A.status == 'executing' and tonumber(data[5]) + tonumber(A.takeover_s) < now
if status ~= 'pending' and not stale_executing then return status end
if tonumber(data[4]) < now then
  redis.call('HSET', K.action, 'status', 'expired', 'since', now)
  if redis.call('GET', K.pending) == A.action_id then redis.call('DEL', K.pending) end
  return 'expired'
end
redis.call('HSET', K.action, 'status', A.status, 'since', now)
if redis.call('GET', K.pending) == A.action_id then redis.call('DEL', K.pending) end
return 'ok'
