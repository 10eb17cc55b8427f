-- Busy intervals of several busy sets in one round trip, as compact text (read only).
-- A reply of one bulk string per key parses far faster than nested WITHSCORES arrays.
-- The request: services/calendar/store.py BusySpans.
-- KEYS[1..] busy: busy sorted sets (score = start, member = `end|...`)
-- ARGV[1] lo: lowest start (inclusive)
-- ARGV[2] hi: highest start (exclusive)
-- Returns one string per key: "start end start end ..."
local out = {}
for i, key in ipairs(KEYS) do
  local rows = redis.call('ZRANGEBYSCORE', key, A.lo, '(' .. A.hi, 'WITHSCORES')
  local parts = {}
  for j = 1, #rows, 2 do
    parts[#parts + 1] = rows[j + 1]
    parts[#parts + 1] = string.match(rows[j], '^(%d+)')
  end
  out[i] = table.concat(parts, ' ')
end
return out
