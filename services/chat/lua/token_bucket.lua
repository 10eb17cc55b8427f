-- Token bucket, atomically: take one token if there is one.
-- The request: services/chat/access.py TakeToken.
-- KEYS[1] bucket: the bucket hash
-- ARGV[1] capacity: the most tokens it holds
-- ARGV[2] refill_per_s: tokens added per second
-- Returns {allowed (1/0), milliseconds until a token is available}.
--#include clock
local cap, rate = tonumber(A.capacity), tonumber(A.refill_per_s)
local now = now_ms()
local b = redis.call('HMGET', K.bucket, 'tokens', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
tokens = math.min(cap, tokens + (now - ts) / 1000 * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', K.bucket, 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', K.bucket, math.ceil(cap / rate * 1000) + 1000)
return {allowed, wait}
