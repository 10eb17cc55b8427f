-- Holds on proposed slots (shared/holds.py). Prepended to the scripts that read or place them.
-- A hold is a member `end|conversation|expires` (epoch s) scored by its start in a calendar's
-- holds set. check_holds(key, s, e, conversation, now): nil when a live hold of another
-- conversation overlaps [s, e); else the members in reach that are this conversation's own or
-- expired (the caller removes them once its write is done).
local function check_holds(key, s, e, conversation, now)
  local rows = redis.call('ZRANGEBYSCORE', key, s - 86400, '(' .. e, 'WITHSCORES')
  local stale = {}
  for i = 1, #rows, 2 do
    local held_end, owner, expires = string.match(rows[i], '^(%d+)|(.*)|(%d+)$')
    if tonumber(expires) <= now or owner == conversation then
      stale[#stale + 1] = rows[i]
    elseif tonumber(rows[i + 1]) < e and tonumber(held_end) > s then
      return nil
    end
  end
  return stale
end

