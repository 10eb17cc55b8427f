-- The Redis server's clock. Deadlines are judged by it, not by a worker's, so a late reclaim on
-- a host whose clock lags cannot apply a command its caller stopped waiting for.
-- now_ms(): the server's time (epoch ms)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- past_deadline(deadline): true when a deadline (epoch ms, 0 = none) has passed
local function past_deadline(deadline)
  deadline = tonumber(deadline)
  if not deadline or deadline == 0 then return false end
  return now_ms() >= deadline
end
