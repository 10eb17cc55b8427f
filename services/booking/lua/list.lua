-- A user's bookings by start, with their JSON, in one read (read-only).
-- The request: services/booking/scripts.py ListRequest.
-- KEYS[1] user_bookings: the user's bookings set (score start)
-- KEYS[2] user_docs: the user's bookings' JSON by id
-- ARGV[1] lo: the lowest start ('-inf': none)
-- ARGV[2] hi: the highest start ('+inf': none)
-- Returns {ids, docs}: docs[i] is the JSON of ids[i], or nil for a booking written before the
--   write scripts kept user_docs (the caller reads its own key: BookingStore.user_bookings)
local ids = redis.call('ZRANGEBYSCORE', K.user_bookings, A.lo, A.hi)
local docs = {}
for i = 1, #ids, 1000 do  -- unpack's limit on arguments
  local part = redis.call('HMGET', K.user_docs, unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #part do docs[#docs + 1] = part[j] end
end
return {ids, docs}
