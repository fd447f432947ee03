-- +goose Up
-- A window no longer stretches to the sync's last own row on a side (with
-- backlogs on both sides, that row comes after the whole backlog, and the
-- window took all of it). It stops at its size; the sync's own rows after
-- it, up to pending_*_own, are read for the window's entities only, to
-- learn which of the window's application writes an apply of the sync has
-- since overwritten. The bound is kept with the pending window, so a run
-- cut off reads the same rows again, and not its own apply's.
ALTER TABLE tandem.sync_state
    ADD COLUMN pending_source_own bigint,
    ADD COLUMN pending_target_own bigint;

-- +goose Down
ALTER TABLE tandem.sync_state
    DROP COLUMN pending_target_own,
    DROP COLUMN pending_source_own;
