-- +goose Up
-- An apply's marker (capture version 3): one change_log row, op 'applied',
-- that lists the engine's own writes to a table in one apply, in place of
-- one captured echo per row written.
ALTER TABLE tandem.change_log DROP CONSTRAINT change_log_op_check;
ALTER TABLE tandem.change_log ADD CONSTRAINT change_log_op_check
    CHECK (op IN ('insert', 'update', 'delete', 'truncate', 'applied'));

-- +goose Down
DELETE FROM tandem.change_log WHERE op = 'applied';
ALTER TABLE tandem.change_log DROP CONSTRAINT change_log_op_check;
ALTER TABLE tandem.change_log ADD CONSTRAINT change_log_op_check
    CHECK (op IN ('insert', 'update', 'delete', 'truncate'));
