-- Store one booking version's invitation, once: a redelivered or outdated event changes nothing.
-- KEYS: 1 invitation hash of the booking, 2 the tenant's invitations stream (outbox)
-- ARGV: 1 event id, 2 sequence, 3 content type, 4 filename, 5 .ics text, 6 outbox maxlen, 7 booking id
-- Returns 1 when stored (and added to the outbox), 0 when this or a later version is already there.
local stored = redis.call('HGET', KEYS[1], 'sequence')
if stored and tonumber(stored) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'event_id', ARGV[1], 'sequence', ARGV[2], 'content_type', ARGV[3],
  'filename', ARGV[4], 'text', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'event_id', ARGV[1], 'booking_id', ARGV[7],
  'sequence', ARGV[2])
return 1
