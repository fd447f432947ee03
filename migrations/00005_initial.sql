-- +goose Up
-- The initial sync of a sync's existing rows (its first run, or
-- `tandem run --resync`): it walks one side's table in key order, then the
-- other's, one chunk per run. initial_phase is the side being walked
-- ('source' or 'target'; NULL once done), initial_after the last key of
-- that side already done, initial_until each side's last key and whether
-- the sync had links when it began ({"source": key, "target": key,
-- "linked": bool}; rows inserted since are captured, and stream), and
-- pending_initial_upto the last key of the
-- chunk a pending run covers, so a run cut off redoes the same chunk.
-- source_through and target_through were set when it began: changes
-- captured up to them are in the rows it reads, later ones stream after it.
ALTER TABLE tandem.sync_state
    ADD COLUMN initial_phase        text CHECK (initial_phase IN ('source', 'target')),
    ADD COLUMN initial_after        jsonb,
    ADD COLUMN initial_until        jsonb,
    ADD COLUMN initial_done         bigint NOT NULL DEFAULT 0,
    ADD COLUMN initial_total        bigint,
    ADD COLUMN initial_started_at   timestamptz,
    ADD COLUMN initial_completed_at timestamptz,
    ADD COLUMN pending_initial_upto jsonb;

-- When the initial sync is done, initial_band_* are each side's last
-- change_log id: a change up to there may be one the initial sync already
-- read in a row (it committed before that row was read), and is skipped
-- then. The links it made keep the snapshot each side was read in, which
-- says so exactly (pg_visible_in_snapshot of the change's xid).
ALTER TABLE tandem.sync_state
    ADD COLUMN initial_band_source bigint,
    ADD COLUMN initial_band_target bigint;
ALTER TABLE tandem.links
    ADD COLUMN source_seen text,
    ADD COLUMN target_seen text;

ALTER TABLE tandem.sync_runs DROP CONSTRAINT sync_runs_trigger_check;
ALTER TABLE tandem.sync_runs ADD CONSTRAINT sync_runs_trigger_check
    CHECK (trigger IN ('notify', 'interval', 'once', 'manual', 'resync', 'initial', 'repair'));

-- +goose Down
DELETE FROM tandem.sync_runs WHERE trigger IN ('initial', 'repair');
ALTER TABLE tandem.sync_runs DROP CONSTRAINT sync_runs_trigger_check;
ALTER TABLE tandem.sync_runs ADD CONSTRAINT sync_runs_trigger_check
    CHECK (trigger IN ('notify', 'interval', 'once', 'manual', 'resync'));
ALTER TABLE tandem.links DROP COLUMN target_seen, DROP COLUMN source_seen;
ALTER TABLE tandem.sync_state
    DROP COLUMN initial_band_target,
    DROP COLUMN initial_band_source,
    DROP COLUMN pending_initial_upto,
    DROP COLUMN initial_completed_at,
    DROP COLUMN initial_started_at,
    DROP COLUMN initial_total,
    DROP COLUMN initial_done,
    DROP COLUMN initial_until,
    DROP COLUMN initial_after,
    DROP COLUMN initial_phase;
