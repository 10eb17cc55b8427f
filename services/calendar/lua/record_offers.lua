-- Record the slots of one fetch_free_slots answer as offers of the conversation, and give each
-- a short reference (the same slot offered again keeps its reference). Layout: shared/offers.py.
-- KEYS: 1 offers hash of the conversation
-- ARGV: 1 offer expiry (epoch s), 2 key expiry (epoch s), 3 calendar ids (comma-separated),
--       4 duration (s), 5.. start epochs
-- Returns the references, in the order of the starts.
local key, expires, cals = KEYS[1], ARGV[1], ARGV[3]
local refs = {}
for i = 5, #ARGV do
  local start = ARGV[i]
  for cal in string.gmatch(cals, '[^,]+') do
    redis.call('HSET', key, cal .. '|' .. start, expires)
  end
  local at = 'at|' .. cals .. '|' .. start
  local ref = redis.call('HGET', key, at)
  if not ref then
    ref = 's' .. redis.call('HINCRBY', key, '#refs', 1)
    redis.call('HSET', key, at, ref, 'ref|' .. ref, start .. '|' .. ARGV[4] .. '|' .. cals)
  end
  refs[#refs + 1] = ref
end
redis.call('EXPIREAT', key, ARGV[2])
return refs
