-- +goose Up
-- A window stops at its size (the engine's window), not at the sync's own
-- last apply on its side: the sync's own rows (markers, echoes) between
-- its end and pending_*_own are read with it, after its rows, so an
-- application write such an apply overwrote is never in a window without
-- the apply's marker. They are read again in the window they fall in
-- (an entity with nothing but echoes there is dropped). Kept with the
-- pending window so that a run cut off redoes exactly the same rows;
-- NULL (a window of an earlier version) reads none.
ALTER TABLE tandem.sync_state
    ADD COLUMN pending_source_own bigint,
    ADD COLUMN pending_target_own bigint;

-- +goose Down
ALTER TABLE tandem.sync_state
    DROP COLUMN pending_source_own,
    DROP COLUMN pending_target_own;
