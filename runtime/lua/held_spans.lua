-- The live holds of other conversations as busy intervals (read only), like busy_spans.lua.
-- The request: runtime/offers.py HeldSpans.
-- KEYS[1..] holds: holds sets
-- ARGV[1] lo: lowest start (inclusive)
-- ARGV[2] hi: highest start (exclusive)
-- ARGV[3] conversation: the asking conversation (its own holds are not busy for it)
-- ARGV[4] now: epoch s
-- Returns one string per key: "start end start end ..."
--#include offers
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = held_spans(key, A.lo, A.hi, A.conversation, tonumber(A.now))
end
return out
