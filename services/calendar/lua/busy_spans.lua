-- Busy intervals of several busy sets in one round trip, as compact text (read only).
-- A reply of one bulk string per key parses far faster than nested WITHSCORES arrays.
-- KEYS: busy sorted sets (score = start, member = `end|...`)
-- ARGV: 1 lowest start (inclusive), 2 highest start (exclusive)
-- Returns one string per key: "start end start end ..."
local out = {}
for i, key in ipairs(KEYS) do
  local rows = redis.call('ZRANGEBYSCORE', key, ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
  local parts = {}
  for j = 1, #rows, 2 do
    parts[#parts + 1] = rows[j + 1]
    parts[#parts + 1] = string.match(rows[j], '^(%d+)')
  end
  out[i] = table.concat(parts, ' ')
end
return out
