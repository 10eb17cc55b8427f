-- Hold a proposed slot for one conversation until the user answers (or the hold expires).
-- The request: runtime/offers.py PlaceHold.
-- KEYS[1..] holds: the holds sets of the slot's calendars
-- ARGV[1] start: the slot's start (epoch s)
-- ARGV[2] ends: its end (epoch s)
-- ARGV[3] conversation: the holding conversation
-- ARGV[4] now: epoch s
-- ARGV[5] expires: the hold's expiry (epoch s)
-- Returns 1 when held (an earlier hold of this conversation in reach is replaced), 0 when
-- another conversation holds an overlapping slot (nothing is written).
--#include offers
local s, e, now = tonumber(A.start), tonumber(A.ends), tonumber(A.now)
local stale = {}
for i, key in ipairs(KEYS) do
  stale[i] = check_holds(key, s, e, A.conversation, now)
  if not stale[i] then return 0 end
end
for i, key in ipairs(KEYS) do
  drop_holds(key, stale[i])
  hold(key, s, e, A.conversation, tonumber(A.expires))
end
return 1
