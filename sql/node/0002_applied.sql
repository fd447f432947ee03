-- Tandem capture, version 2: what the engine applied here. The engine writes
-- a sync's row in the same transaction as that sync's writes to this node, so
-- after a crash it knows whether its last apply here committed (and what it
-- created) without applying twice.
CREATE TABLE tandem.applied (
    sync_id    text        NOT NULL,
    side       text        NOT NULL CHECK (side IN ('source', 'target')),
    run_id     bigint      NOT NULL,
    result     jsonb       NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_id, side)
);
COMMENT ON TABLE tandem.applied IS
    'tandem: the last run each sync applied to this node, written with the apply itself';
