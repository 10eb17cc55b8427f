-- The live holds of other conversations as busy intervals (read only), like busy_spans.lua.
-- KEYS: holds sets (shared/holds.py) ARGV: 1 lowest start, 2 highest start (exclusive),
-- 3 the asking conversation (its own holds are not busy for it), 4 now (epoch s)
-- Returns one string per key: "start end start end ..."
local out = {}
for i, key in ipairs(KEYS) do
  local rows = redis.call('ZRANGEBYSCORE', key, ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
  local parts = {}
  for j = 1, #rows, 2 do
    local held_end, owner, expires = string.match(rows[j], '^(%d+)|(.*)|(%d+)$')
    if owner ~= ARGV[3] and tonumber(expires) > tonumber(ARGV[4]) then
      parts[#parts + 1] = rows[j + 1]
      parts[#parts + 1] = held_end
    end
  end
  out[i] = table.concat(parts, ' ')
end
return out
