-- 001_init: jobs, their inputs, attempts, results, and the webhook outbox.
-- Times are milliseconds since the epoch (UTC). States as in src/queue.h.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued','running','succeeded','failed','dead','cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,   -- runs started (claims)
    max_attempts     INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    run_after_ms     INTEGER NOT NULL,             -- not claimable before
    started_ms       INTEGER,                      -- first claim
    finished_ms      INTEGER,
    lease_expires_ms INTEGER,
    claim_token      TEXT,                         -- fencing: every write after claim names it
    worker_id        TEXT,
    idem_key         TEXT UNIQUE,
    prompt           TEXT,
    webhook_url      TEXT,
    webhook_secret   TEXT,
    params_json      TEXT,
    error_code       TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
-- partial indexes in claim order: a claim walks them and stops at the first wanted kind
CREATE INDEX jobs_claim ON jobs (priority DESC, run_after_ms, id) WHERE state IN ('queued','failed');
CREATE INDEX jobs_lease ON jobs (lease_expires_ms) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_ms);

CREATE TABLE job_inputs (
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    path       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_s    INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    outcome     TEXT,   -- succeeded, failed, lease_expired, cancelled, released
    error       TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE results (
    job_id     INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    format     TEXT NOT NULL,
    body       BLOB NOT NULL,
    summary    TEXT,
    created_ms INTEGER NOT NULL
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,       -- webhook-id, the same on every retry
    job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    url             TEXT NOT NULL,
    secret          TEXT,
    body            TEXT NOT NULL,              -- the exact bytes signed and sent
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending','delivered','failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL
);
CREATE INDEX events_due ON events (state, next_attempt_ms);
CREATE INDEX events_job ON events (job_id);

CREATE TABLE event_attempts (
    event_row   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    http_status INTEGER,
    error       TEXT,
    duration_s  REAL,
    PRIMARY KEY (event_row, attempt)
);

CREATE TABLE disabled_endpoints (
    url      TEXT PRIMARY KEY,
    since_ms INTEGER NOT NULL,
    reason   TEXT
);
