-- 003_event_lease: the outbox is shared by the delivery threads of every worker. An event
-- handed out by queue_events_due is leased (until lease_until_ms, to lease_token) so no
-- other deliverer sends it at the same time; the attempt is recorded only with the token.

ALTER TABLE events ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE events ADD COLUMN lease_token TEXT;
