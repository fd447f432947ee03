-- +goose Up
-- The sync engine's state: how far each sync has consumed each side's
-- changes, and the run it has planned but not yet finished.

-- One row per sync. *_through are the last change_log ids of each side that
-- the sync has fully dealt with. A run first records its window here
-- (pending_*) with its run row, then applies, then advances *_through and
-- clears pending_* in one transaction: a run cut off anywhere is redone on
-- exactly the same window, and each node's tandem.applied says whether its
-- part already committed.
CREATE TABLE tandem.sync_state (
    sync_id                text PRIMARY KEY,
    source_through         bigint      NOT NULL DEFAULT 0,
    target_through         bigint      NOT NULL DEFAULT 0,
    pending_run            bigint REFERENCES tandem.sync_runs (id) ON DELETE SET NULL,
    pending_source_through bigint,
    pending_target_through bigint,
    checked_at             timestamptz,
    last_error             text
);

-- The window of change_log ids each run consumed, so analysts can join a
-- run to the changes it took (change_log.id BETWEEN from AND through, on the
-- sync's node and table).
ALTER TABLE tandem.sync_runs
    ADD COLUMN source_from    bigint,
    ADD COLUMN source_through bigint,
    ADD COLUMN target_from    bigint,
    ADD COLUMN target_through bigint;

-- Which fields a conflict was about, and the entity key on the side whose
-- changes are held while a manual conflict is open.
ALTER TABLE tandem.sync_conflicts
    ADD COLUMN fields text[],
    ADD COLUMN kind   text NOT NULL DEFAULT 'update_update'
        CHECK (kind IN ('update_update', 'update_delete', 'insert_insert', 'concurrent_apply'));
CREATE INDEX sync_conflicts_open_source ON tandem.sync_conflicts (sync_id, source_key) WHERE status = 'open';
CREATE INDEX sync_conflicts_open_target ON tandem.sync_conflicts (sync_id, target_key) WHERE status = 'open';

-- Errors are retried by later runs until an apply of the same entity on the
-- same side succeeds.
ALTER TABLE tandem.sync_errors ADD COLUMN side text CHECK (side IN ('source', 'target'));
CREATE INDEX sync_errors_open ON tandem.sync_errors (sync_id, side) WHERE resolved_at IS NULL;

-- A sync's window on a side always reaches past the last of its own applies
-- there (its echoes): an application write that an apply overwrote must be
-- seen together with that apply. Only rows with an origin (tandem's writes)
-- are indexed, so an application change costs no index insert.
CREATE INDEX change_log_echoes ON tandem.change_log (node, table_name, origin, id) WHERE origin IS NOT NULL;

-- Per sync: pending changes in change_log not yet consumed, and the age of
-- the oldest.
CREATE VIEW tandem.sync_lag AS
SELECT s.sync_id, s.checked_at, s.source_through, s.target_through, s.last_error,
       (SELECT count(*) FROM tandem.sync_runs r WHERE r.sync_id = s.sync_id) AS runs,
       (SELECT count(*) FROM tandem.sync_conflicts c WHERE c.sync_id = s.sync_id AND c.status = 'open') AS open_conflicts,
       (SELECT count(*) FROM tandem.sync_errors e WHERE e.sync_id = s.sync_id AND e.resolved_at IS NULL) AS open_errors
FROM tandem.sync_state s;

-- +goose Down
DROP VIEW tandem.sync_lag;
DROP INDEX tandem.change_log_echoes;
DROP INDEX tandem.sync_errors_open;
ALTER TABLE tandem.sync_errors DROP COLUMN side;
DROP INDEX tandem.sync_conflicts_open_target;
DROP INDEX tandem.sync_conflicts_open_source;
ALTER TABLE tandem.sync_conflicts DROP COLUMN kind, DROP COLUMN fields;
ALTER TABLE tandem.sync_runs DROP COLUMN target_through, DROP COLUMN target_from,
    DROP COLUMN source_through, DROP COLUMN source_from;
DROP TABLE tandem.sync_state;
