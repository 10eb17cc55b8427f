-- Offers and holds of conversations: the one Lua spelling of their layout, described (and read
-- from Python) in runtime/offers.py.
-- offer(key, calendars, start, duration, expires): record `start` (common to the comma-separated
-- calendars, `duration` s long) as offered in the conversation whose offers hash is `key`, until
-- `expires`; returns its reference, the same one when the slot is offered again
local function offer(key, calendars, start, duration, expires)
  for calendar in string.gmatch(calendars, '[^,]+') do
    redis.call('HSET', key, calendar .. '|' .. start, expires)
  end
  local at = 'at|' .. calendars .. '|' .. start
  local ref = redis.call('HGET', key, at)
  if not ref then
    ref = 's' .. redis.call('HINCRBY', key, '#refs', 1)
    redis.call('HSET', key, at, ref, 'ref|' .. ref, start .. '|' .. duration .. '|' .. calendars)
  end
  return ref
end
-- offered_ref(key, ref): the field recorded under reference `ref` (`start|duration|calendars`)
-- and its start, as a string; false and '' when the conversation never offered it
local function offered_ref(key, ref)
  local offer = redis.call('HGET', key, 'ref|' .. ref)
  if not offer then return false, '' end
  return offer, string.match(offer, '^(%d+)|') or ''
end
-- offer_refused(key, calendar, start, now): nil when `start` of `calendar` was offered in the
-- conversation and the offer is live; else why not: 'not_offered' or 'offer_expired'
local function offer_refused(key, calendar, start, now)
  local expires = redis.call('HGET', key, calendar .. '|' .. start)
  if not expires then return 'not_offered' end
  if tonumber(expires) < tonumber(now) then return 'offer_expired' end
  return nil
end
-- parse_hold(member): end, holding conversation, expiry of a holds-set member
local function parse_hold(member)
  local held_end, owner, expires = string.match(member, '^(%d+)|(.*)|(%d+)$')
  return tonumber(held_end), owner, tonumber(expires)
end
-- check_holds(key, s, e, conversation, now): nil when a live hold of another conversation
-- overlaps [s, e); else the members in reach that are this conversation's own or expired (the
-- caller removes them with drop_holds once its write is done)
local function check_holds(key, s, e, conversation, now)
  local rows = redis.call('ZRANGEBYSCORE', key, s - 86400, '(' .. e, 'WITHSCORES')
  local stale = {}
  for i = 1, #rows, 2 do
    local held_end, owner, expires = parse_hold(rows[i])
    if expires <= now or owner == conversation then
      stale[#stale + 1] = rows[i]
    elseif tonumber(rows[i + 1]) < e and held_end > s then
      return nil
    end
  end
  return stale
end
-- drop_holds(key, members): remove holds that check_holds found stale
local function drop_holds(key, members)
  if #members > 0 then redis.call('ZREM', key, unpack(members)) end
end
-- hold(key, s, e, conversation, expires): hold [s, e) for the conversation until `expires`
local function hold(key, s, e, conversation, expires)
  redis.call('ZADD', key, s, e .. '|' .. conversation .. '|' .. expires)
  redis.call('EXPIREAT', key, expires + 86400)
end
-- held_spans(key, lo, hi, conversation, now): the live holds of other conversations starting in
-- [lo, hi), as "start end start end ..."
local function held_spans(key, lo, hi, conversation, now)
  local rows = redis.call('ZRANGEBYSCORE', key, lo, '(' .. hi, 'WITHSCORES')
  local parts = {}
  for j = 1, #rows, 2 do
    local held_end, owner, expires = parse_hold(rows[j])
    if owner ~= conversation and expires > now then
      parts[#parts + 1] = rows[j + 1]
      parts[#parts + 1] = held_end
    end
  end
  return table.concat(parts, ' ')
end
