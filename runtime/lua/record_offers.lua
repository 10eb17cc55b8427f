-- Record the slots of one fetch_free_slots answer as offers of the conversation, and give each
-- a short reference (the same slot offered again keeps its reference).
-- The request: runtime/offers.py RecordOffers.
-- KEYS[1] offers: the conversation's offers hash
-- ARGV[1] expires: the offers' expiry (epoch s)
-- ARGV[2] key_expires: the hash's expiry (epoch s)
-- ARGV[3] calendars: calendar ids, comma-separated
-- ARGV[4] duration: the slots' length (s)
-- ARGV[5..] starts: start epochs
-- Returns the references, in the order of the starts.
--#include offers
local refs = {}
for i = 5, #ARGV do
  refs[#refs + 1] = offer(K.offers, A.calendars, ARGV[i], A.duration, A.expires)
end
redis.call('EXPIREAT', K.offers, A.key_expires)
return refs
