-- The tickets, their catalog facts, sync state, the removal log and the trash (the embedded store's
-- catalog.sqlite3 plus the file contents, in tables).
CREATE TABLE tickets (
    hash            TEXT PRIMARY KEY,          -- the seed's get_hash(): also the exported file name
    source          TEXT NOT NULL,             -- the instance name
    ticket_id       TEXT NOT NULL,
    updated_at      TEXT NOT NULL DEFAULT '',  -- upstream update time, ISO-8601 UTC ('' when unknown)
    updated_ts      DOUBLE PRECISION,          -- the same as epoch seconds, for ordering
    content         TEXT NOT NULL,
    metadata        TEXT,                      -- the metadata's canonical JSON (NULL: none)
    content_digest  TEXT NOT NULL,
    metadata_digest TEXT NOT NULL,
    written_at      TEXT NOT NULL,
    UNIQUE (source, ticket_id)
);

CREATE TABLE cursors (
    system TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);

CREATE TABLE resyncs (
    system      TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    summary     TEXT NOT NULL               -- JSON
);

CREATE TABLE removals (
    id              BIGSERIAL PRIMARY KEY,
    source          TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    removed_at      TEXT NOT NULL,
    removed_ts      DOUBLE PRECISION NOT NULL,
    reason          TEXT NOT NULL,
    updated_at      TEXT,
    updated_ts      DOUBLE PRECISION,
    content_digest  TEXT,
    metadata_digest TEXT,
    in_trash        BOOLEAN NOT NULL,
    restored_at     TEXT,
    purged_at       TEXT
);
CREATE INDEX removals_by_ticket ON removals (source, ticket_id);
CREATE INDEX removals_by_time ON removals (removed_ts);

-- A removed copy's content until it is restored or purged.
CREATE TABLE trash (
    removal_id BIGINT PRIMARY KEY REFERENCES removals (id) ON DELETE CASCADE,
    content    TEXT NOT NULL,
    metadata   TEXT
);
