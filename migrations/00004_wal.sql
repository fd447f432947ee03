-- +goose Up
-- WAL capture (capture: wal): a node read from a logical replication slot
-- keeps its cursor as an LSN. Everything in the slot's stream up to lsn is
-- in change_log; it is written in the same transaction as the rows, and
-- the slot's confirmed position is only advanced to it afterwards.
ALTER TABLE tandem.cursors ADD COLUMN lsn pg_lsn;

-- +goose Down
ALTER TABLE tandem.cursors DROP COLUMN lsn;
