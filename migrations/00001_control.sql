-- +goose Up
-- The control database: everything tandem knows about its syncs. Analysts
-- may query every table and view here.

-- One row: this control database's identity. Its id names this control
-- database as a consumer of node queues (tandem.consumers on each node).
CREATE TABLE tandem.instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tandem.instance DEFAULT VALUES;

-- The syncs of tandem.yaml as last loaded, for reporting.
CREATE TABLE tandem.sync_configs (
    sync_id     text PRIMARY KEY,
    entity      text        NOT NULL,
    source_node text        NOT NULL,
    source_table text       NOT NULL,
    target_node text        NOT NULL,
    target_table text       NOT NULL,
    direction   text        NOT NULL,
    conflict    text        NOT NULL,
    config      jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change the engine took from a node, in the order it took them.
-- queue_id is the id in the node's tandem.change_queue (trigger capture).
CREATE TABLE tandem.change_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node        text        NOT NULL,
    queue_id    bigint,
    table_name  text        NOT NULL,
    op          text        NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'truncate')),
    keys        jsonb,
    old         jsonb,
    new         jsonb,
    xid         xid8,
    captured_at timestamptz NOT NULL,
    origin      text,
    run_id      bigint,
    logged_at   timestamptz NOT NULL DEFAULT now()
);
-- No secondary index: every change taken costs one index insert (the
-- reader moves changes in bulk); readers walk id ranges.

-- Where each node's queue has been read up to. A window runs from snapshot
-- (everything visible in it is taken) to window_to; after_queue_id is the
-- last queue row of the window already taken. Written in the same
-- transaction as the change_log rows it accounts for.
CREATE TABLE tandem.cursors (
    node           text PRIMARY KEY,
    snapshot       text        NOT NULL,
    window_to      text,
    after_queue_id bigint      NOT NULL DEFAULT 0,
    rows_taken     bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per run of a sync that changed something, found a conflict or failed.
CREATE TABLE tandem.sync_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync_id      text        NOT NULL,
    synced       integer     NOT NULL DEFAULT 0,
    conflicts    integer     NOT NULL DEFAULT 0,
    errors       integer     NOT NULL DEFAULT 0,
    created      integer     NOT NULL DEFAULT 0,
    updated      integer     NOT NULL DEFAULT 0,
    deleted      integer     NOT NULL DEFAULT 0,
    duration_ms  integer,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    trigger      text        NOT NULL DEFAULT 'interval' CHECK (trigger IN ('notify', 'interval', 'once', 'manual', 'resync')),
    status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    error        text
);
CREATE INDEX sync_runs_sync ON tandem.sync_runs (sync_id, started_at);

-- Conflicts: both changes, the base, how it was settled, what was kept and lost.
CREATE TABLE tandem.sync_conflicts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync_id       text        NOT NULL,
    run_id        bigint REFERENCES tandem.sync_runs (id),
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    source_key    jsonb,
    target_key    jsonb,
    source_change jsonb,
    target_change jsonb,
    base          jsonb,
    resolution    text,
    kept          jsonb,
    lost          jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   text
);
CREATE INDEX sync_conflicts_open ON tandem.sync_conflicts (sync_id) WHERE status = 'open';

-- The identity map: which source key is which target key.
CREATE TABLE tandem.links (
    sync_id    text  NOT NULL,
    source_key jsonb NOT NULL,
    target_key jsonb NOT NULL,
    base       jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_id, source_key)
);
CREATE UNIQUE INDEX links_target ON tandem.links (sync_id, target_key);

-- Rows that could not be applied, with the reason.
CREATE TABLE tandem.sync_errors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync_id     text        NOT NULL,
    run_id      bigint REFERENCES tandem.sync_runs (id),
    node        text        NOT NULL,
    table_name  text        NOT NULL,
    keys        jsonb,
    change      jsonb,
    reason      text        NOT NULL,
    sqlstate    text,
    constraint_name text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

-- Analysts' views.
CREATE VIEW tandem.sync_daily AS
SELECT sync_id, date_trunc('day', started_at) AS day, count(*) AS runs,
       sum(synced) AS synced, sum(created) AS created, sum(updated) AS updated,
       sum(deleted) AS deleted, sum(conflicts) AS conflicts, sum(errors) AS errors,
       count(*) FILTER (WHERE status = 'failed') AS failed_runs
FROM tandem.sync_runs
GROUP BY sync_id, date_trunc('day', started_at);

CREATE VIEW tandem.open_conflicts AS
SELECT * FROM tandem.sync_conflicts WHERE status = 'open';

CREATE VIEW tandem.capture_lag AS
SELECT node, rows_taken, updated_at AS last_taken_at, now() - updated_at AS since_last_take
FROM tandem.cursors;

-- +goose Down
DROP VIEW tandem.capture_lag;
DROP VIEW tandem.open_conflicts;
DROP VIEW tandem.sync_daily;
DROP TABLE tandem.sync_errors;
DROP TABLE tandem.links;
DROP TABLE tandem.sync_conflicts;
DROP TABLE tandem.sync_runs;
DROP TABLE tandem.cursors;
DROP TABLE tandem.change_log;
DROP TABLE tandem.sync_configs;
DROP TABLE tandem.instance;
