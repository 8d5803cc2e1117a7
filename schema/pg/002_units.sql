-- 002_units (PostgreSQL): per-unit results, as schema/sqlite/002_units.sql.

CREATE TABLE job_units (
    job_id      BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,   -- 0-based unit index, in the kind's order
    result      TEXT,               -- the unit's text (NULL when it failed)
    meta_json   TEXT,               -- kind-specific facts: page number, time range, frames
    tok_in      BIGINT NOT NULL DEFAULT 0,
    tok_out     BIGINT NOT NULL DEFAULT 0,
    seconds     DOUBLE PRECISION NOT NULL DEFAULT 0,
    error_code  TEXT,               -- "EINPUT", ... for a unit that failed for good
    error       TEXT,
    attempt     INTEGER NOT NULL,   -- the job attempt that stored it
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (job_id, idx)
);

-- how many units the running job has (0: not planned yet), for progress in `vlq show`
ALTER TABLE jobs ADD COLUMN units_total INTEGER NOT NULL DEFAULT 0;
