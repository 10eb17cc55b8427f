-- Store one booking version's invitation, once: a redelivered or outdated event changes nothing.
-- The request: services/booking/scripts.py StoreInvitation.
-- KEYS[1] invitation: the booking's invitation hash
-- KEYS[2] outbox: the tenant's invitations stream
-- ARGV[1] event_id: the event's id
-- ARGV[2] sequence: the booking version
-- ARGV[3] content_type: the attachment's content type
-- ARGV[4] filename: its file name
-- ARGV[5] text: the .ics text
-- ARGV[6] maxlen: the outbox's approximate length cap
-- ARGV[7] booking_id: the booking's id
-- Returns 1 when stored (and added to the outbox), 0 when this or a later version is already there.
local stored = redis.call('HGET', K.invitation, 'sequence')
if stored and tonumber(stored) >= tonumber(A.sequence) then return 0 end
redis.call('HSET', K.invitation, 'event_id', A.event_id, 'sequence', A.sequence, 'content_type', A.content_type,
  'filename', A.filename, 'text', A.text)
redis.call('XADD', K.outbox, 'MAXLEN', '~', A.maxlen, '*', 'event_id', A.event_id, 'booking_id', A.booking_id,
  'sequence', A.sequence)
return 1
