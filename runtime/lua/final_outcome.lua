-- The final outcome of a write whose caller stopped waiting (read only).
-- The request: runtime/outcomes.py FinalOutcome.
-- KEYS[1] idempotency: the command's idempotency hash
-- ARGV[1] deadline_ms: the command's deadline (epoch ms)
-- Returns {'wait', ms} while the server's clock is before the deadline, else {'final', fp, result}
--#include clock
local now = now_ms()
if now < tonumber(A.deadline_ms) then return {'wait', tostring(tonumber(A.deadline_ms) - now)} end
local seen = redis.call('HMGET', K.idempotency, 'fp', 'result')
return {'final', seen[1] or '', seen[2] or ''}
