-- 003_event_lease (PostgreSQL): as schema/sqlite/003_event_lease.sql.

ALTER TABLE events ADD COLUMN lease_until_ms BIGINT;
ALTER TABLE events ADD COLUMN lease_token TEXT;
