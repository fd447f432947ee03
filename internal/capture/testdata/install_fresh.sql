-- tandem capture on node crm: version 0 -> 5
BEGIN;
CREATE SCHEMA tandem;
CREATE TABLE tandem.capture_info (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version        integer     NOT NULL,
    created_schema boolean     NOT NULL,
    installed_at   timestamptz NOT NULL DEFAULT now(),
    upgraded_at    timestamptz
);
INSERT INTO tandem.capture_info (version, created_schema) VALUES (0, true);
-- capture version 1 (0001_capture.sql)
-- Tandem capture, version 1: the change queue, its consumers, the NOTIFY
-- coalescing flag, the statement-level trigger function and the views a DBA
-- uses to watch the queue. Installed by `tandem install NODE` in one
-- transaction; `tandem install NODE --print` shows exactly this text.

-- Every captured row change waits here until every consumer has taken it.
-- id is capture order; xid is the writing transaction (xid8, wraparound-safe),
-- used with consumers' snapshots so a reader never skips a transaction that
-- started early and committed late. Readers and pruning walk the primary
-- key; xid has no index, so a captured row costs one index insert.
CREATE TABLE tandem.change_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text        NOT NULL,
    op          text        NOT NULL,
    keys        jsonb,
    old         jsonb,
    new         jsonb,
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    captured_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    origin      text
);
COMMENT ON TABLE tandem.change_queue IS
    'tandem: captured row changes (op insert|update|delete|truncate; update keeps only changed columns in old/new), pruned once every consumer has taken them';

-- Each reader (one per control database) records the snapshot up to which it
-- has taken changes; rows below every consumer's xmin are pruned.
CREATE TABLE tandem.consumers (
    name     text        PRIMARY KEY,
    snapshot pg_snapshot NOT NULL,
    acked_at timestamptz NOT NULL DEFAULT now()
);

-- NOTIFY coalescing: the reader re-arms by resetting this sequence
-- (setval(.., 1, false)); the one writer whose nextval returns 1 sends NOTIFY,
-- every other gets 2, 3, ... and stays silent. So a burst of commits sends
-- one NOTIFY, and commits do not serialize on the cluster-wide notify lock.
-- nextval is non-transactional and needs no table read: the check costs
-- next to nothing. UNLOGGED: no WAL; after a crash it starts armed.
-- (If the writer that drew 1 rolls back, no NOTIFY goes out until the
-- reader re-arms on its next poll: NOTIFY is a hint, the queue is the truth.)
CREATE UNLOGGED SEQUENCE tandem.notify_seq;

-- A row's key, from its jsonb: the first key column alone (the common case),
-- or the row minus every non-key column. A plain SQL expression, so the
-- planner inlines it (STABLE, like jsonb_build_object: a more volatile body
-- than the declaration would block inlining).
CREATE FUNCTION tandem.row_key(j jsonb, k1 text, nonkey text[]) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN nonkey IS NULL THEN jsonb_build_object(k1, j -> k1) ELSE j - nonkey END $$;

-- Statement-level trigger function. TG_ARGV holds the key columns. Transition
-- tables are named tandem_old / tandem_new by the triggers.
CREATE FUNCTION tandem.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $fn$
DECLARE
    tbl    text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    org    text := nullif(current_setting('tandem.origin', true), '');
    k1     text := TG_ARGV[0];
    nonkey text[];
    n      bigint;
    oj     jsonb;
    nj     jsonb;
    okey   jsonb;
    nkey   jsonb;
BEGIN
    IF TG_NARGS > 1 THEN
        -- composite key: keys = the row minus every non-key column
        SELECT array_agg(a.attname) INTO nonkey FROM pg_attribute a
        WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT (a.attname = ANY (TG_ARGV));
        nonkey := coalesce(nonkey, '{}');
    END IF;

    IF TG_OP = 'INSERT' THEN
        INSERT INTO tandem.change_queue (table_name, op, keys, new, origin)
        SELECT tbl, 'insert',
               tandem.row_key(r.j, k1, nonkey),
               r.j, org
        FROM (SELECT to_jsonb(t) AS j FROM tandem_new t) r;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tandem.change_queue (table_name, op, keys, old, origin)
        SELECT tbl, 'delete',
               tandem.row_key(r.j, k1, nonkey),
               r.j, org
        FROM (SELECT to_jsonb(t) AS j FROM tandem_old t) r;
    ELSIF TG_OP = 'UPDATE' THEN
        -- (Nested: plpgsql plans a whole condition, and only UPDATE triggers
        -- have tandem_new and tandem_old together.)
        IF (SELECT count(*) FROM tandem_new) = 1 THEN
            -- One row, the common case: plpgsql variables instead of a join.
            SELECT to_jsonb(o), to_jsonb(t) INTO oj, nj FROM tandem_old o, tandem_new t;
            okey := tandem.row_key(oj, k1, nonkey);
            nkey := tandem.row_key(nj, k1, nonkey);
            IF okey IS DISTINCT FROM nkey THEN
                INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
                VALUES (tbl, 'delete', okey, oj, NULL, org), (tbl, 'insert', nkey, NULL, nj, org);
            ELSIF oj IS DISTINCT FROM nj THEN
                INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
                SELECT tbl, 'update', nkey, jsonb_object_agg(e.key, oj -> e.key), jsonb_object_agg(e.key, e.value), org
                FROM jsonb_each(nj) e
                WHERE e.value IS DISTINCT FROM oj -> e.key;
            END IF;
        ELSE
            -- Pair old and new rows by key. A row whose key changed has no
            -- partner: it is recorded as a delete of the old key and an insert
            -- of the new one. Only changed columns are kept; no change, no row.
            -- MATERIALIZED: each row is turned into jsonb once, not once per use.
            WITH o AS MATERIALIZED (
                SELECT x.j, tandem.row_key(x.j, k1, nonkey) AS k
                FROM (SELECT to_jsonb(t) AS j FROM tandem_old t) x
            ), n AS MATERIALIZED (
                SELECT x.j, tandem.row_key(x.j, k1, nonkey) AS k
                FROM (SELECT to_jsonb(t) AS j FROM tandem_new t) x
            )
            INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
            SELECT tbl,
                   CASE WHEN o.k IS NULL THEN 'insert' WHEN n.k IS NULL THEN 'delete' ELSE 'update' END,
                   coalesce(n.k, o.k),
                   CASE WHEN n.k IS NULL THEN o.j WHEN o.k IS NULL THEN NULL ELSE d.old END,
                   CASE WHEN o.k IS NULL THEN n.j WHEN n.k IS NULL THEN NULL ELSE d.new END,
                   org
            FROM o FULL JOIN n ON o.k = n.k
            LEFT JOIN LATERAL (
                SELECT jsonb_object_agg(e.key, o.j -> e.key) AS old, jsonb_object_agg(e.key, e.value) AS new
                FROM jsonb_each(n.j) e
                WHERE e.value IS DISTINCT FROM o.j -> e.key
            ) d ON o.j IS DISTINCT FROM n.j
            WHERE o.k IS NULL OR n.k IS NULL OR d.new IS NOT NULL
            ORDER BY n.k IS NULL DESC;
        END IF;
    ELSE
        INSERT INTO tandem.change_queue (table_name, op, origin) VALUES (tbl, 'truncate', org);
    END IF;

    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 AND nextval('tandem.notify_seq') = 1 THEN
        PERFORM pg_notify('tandem_changes', tbl);
    END IF;
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION tandem.capture() FROM PUBLIC;

-- What a DBA looks at when nothing drains the queue.
CREATE VIEW tandem.queue_status AS
SELECT count(*)                                    AS pending_rows,
       min(q.captured_at)                          AS oldest_captured_at,
       now() - min(q.captured_at)                  AS oldest_age,
       pg_total_relation_size('tandem.change_queue') AS queue_bytes,
       (SELECT count(*) FROM tandem.consumers)     AS consumers,
       (SELECT min(c.acked_at) FROM tandem.consumers c) AS oldest_ack
FROM tandem.change_queue q;

CREATE VIEW tandem.queue_tables AS
SELECT q.table_name, count(*) AS pending_rows, min(q.captured_at) AS oldest_captured_at
FROM tandem.change_queue q
GROUP BY q.table_name;
-- capture version 2 (0002_applied.sql)
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
-- capture version 3 (0003_marked.sql)
-- Tandem capture, version 3: the engine marks its own writes once per apply.
-- A session that sets tandem.marked to a table's schema.name (and
-- tandem.origin) writes that table without the trigger recording each row:
-- it inserts a single 'applied' row into the queue instead, listing what it
-- wrote, after its writes and in the same transaction. Row locks order an
-- application's write to a row either before the engine's write (so before
-- the marker) or after its commit, exactly as per-row echoes were ordered.
-- Writes to other tables in that session (an application trigger's, a
-- cascade's) are captured as before.
CREATE OR REPLACE FUNCTION tandem.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $fn$
DECLARE
    tbl    text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    org    text := nullif(current_setting('tandem.origin', true), '');
    k1     text := TG_ARGV[0];
    nonkey text[];
    n      bigint;
    oj     jsonb;
    nj     jsonb;
    okey   jsonb;
    nkey   jsonb;
BEGIN
    IF org IS NOT NULL AND current_setting('tandem.marked', true) = tbl THEN
        RETURN NULL; -- the engine's apply: its marker row records the writes
    END IF;
    IF TG_NARGS > 1 THEN
        -- composite key: keys = the row minus every non-key column
        SELECT array_agg(a.attname) INTO nonkey FROM pg_attribute a
        WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT (a.attname = ANY (TG_ARGV));
        nonkey := coalesce(nonkey, '{}');
    END IF;

    IF TG_OP = 'INSERT' THEN
        INSERT INTO tandem.change_queue (table_name, op, keys, new, origin)
        SELECT tbl, 'insert',
               tandem.row_key(r.j, k1, nonkey),
               r.j, org
        FROM (SELECT to_jsonb(t) AS j FROM tandem_new t) r;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tandem.change_queue (table_name, op, keys, old, origin)
        SELECT tbl, 'delete',
               tandem.row_key(r.j, k1, nonkey),
               r.j, org
        FROM (SELECT to_jsonb(t) AS j FROM tandem_old t) r;
    ELSIF TG_OP = 'UPDATE' THEN
        -- (Nested: plpgsql plans a whole condition, and only UPDATE triggers
        -- have tandem_new and tandem_old together.)
        IF (SELECT count(*) FROM tandem_new) = 1 THEN
            -- One row, the common case: plpgsql variables instead of a join.
            SELECT to_jsonb(o), to_jsonb(t) INTO oj, nj FROM tandem_old o, tandem_new t;
            okey := tandem.row_key(oj, k1, nonkey);
            nkey := tandem.row_key(nj, k1, nonkey);
            IF okey IS DISTINCT FROM nkey THEN
                INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
                VALUES (tbl, 'delete', okey, oj, NULL, org), (tbl, 'insert', nkey, NULL, nj, org);
            ELSIF oj IS DISTINCT FROM nj THEN
                INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
                SELECT tbl, 'update', nkey, jsonb_object_agg(e.key, oj -> e.key), jsonb_object_agg(e.key, e.value), org
                FROM jsonb_each(nj) e
                WHERE e.value IS DISTINCT FROM oj -> e.key;
            END IF;
        ELSE
            -- Pair old and new rows by key. A row whose key changed has no
            -- partner: it is recorded as a delete of the old key and an insert
            -- of the new one. Only changed columns are kept; no change, no row.
            -- MATERIALIZED: each row is turned into jsonb once, not once per use.
            WITH o AS MATERIALIZED (
                SELECT x.j, tandem.row_key(x.j, k1, nonkey) AS k
                FROM (SELECT to_jsonb(t) AS j FROM tandem_old t) x
            ), n AS MATERIALIZED (
                SELECT x.j, tandem.row_key(x.j, k1, nonkey) AS k
                FROM (SELECT to_jsonb(t) AS j FROM tandem_new t) x
            )
            INSERT INTO tandem.change_queue (table_name, op, keys, old, new, origin)
            SELECT tbl,
                   CASE WHEN o.k IS NULL THEN 'insert' WHEN n.k IS NULL THEN 'delete' ELSE 'update' END,
                   coalesce(n.k, o.k),
                   CASE WHEN n.k IS NULL THEN o.j WHEN o.k IS NULL THEN NULL ELSE d.old END,
                   CASE WHEN o.k IS NULL THEN n.j WHEN n.k IS NULL THEN NULL ELSE d.new END,
                   org
            FROM o FULL JOIN n ON o.k = n.k
            LEFT JOIN LATERAL (
                SELECT jsonb_object_agg(e.key, o.j -> e.key) AS old, jsonb_object_agg(e.key, e.value) AS new
                FROM jsonb_each(n.j) e
                WHERE e.value IS DISTINCT FROM o.j -> e.key
            ) d ON o.j IS DISTINCT FROM n.j
            WHERE o.k IS NULL OR n.k IS NULL OR d.new IS NOT NULL
            ORDER BY n.k IS NULL DESC;
        END IF;
    ELSE
        INSERT INTO tandem.change_queue (table_name, op, origin) VALUES (tbl, 'truncate', org);
    END IF;

    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 AND nextval('tandem.notify_seq') = 1 THEN
        PERFORM pg_notify('tandem_changes', tbl);
    END IF;
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION tandem.capture() FROM PUBLIC;
-- capture version 4 (0004_render_utc.sql)
-- Tandem capture, version 4: the trigger renders rows under fixed settings,
-- whatever the writing session's: timestamps with time zone in UTC,
-- intervals in the postgres style, floats exactly. The same row written
-- from sessions in different time zones then has the same keys and values
-- in the queue, as the engine's own sessions and the WAL stream render it.
-- (A function's SET applies while it runs only: the application's session
-- keeps its own settings.)
ALTER FUNCTION tandem.capture() SET "TimeZone" = 'UTC';
ALTER FUNCTION tandem.capture() SET "IntervalStyle" = 'postgres';
ALTER FUNCTION tandem.capture() SET extra_float_digits = 3;
-- capture version 5 (0005_own_rows.sql)
-- Tandem capture, version 5: an index of the queue rows tandem wrote itself
-- (origin set: an apply's marker, per-row echoes, a conflict's settlement).
-- A pull that stops part way through a backlog first makes sure none of the
-- sync's own rows is left behind; with this index that is a lookup, not a
-- walk of the whole queue. Application rows (origin NULL) are not in it.
CREATE INDEX IF NOT EXISTS change_queue_origin ON tandem.change_queue (origin) WHERE origin IS NOT NULL;
UPDATE tandem.capture_info SET version = 5, upgraded_at = now();
CREATE TRIGGER tandem_capture_insert AFTER INSERT ON "public"."contacts" REFERENCING NEW TABLE AS tandem_new FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('id');
CREATE TRIGGER tandem_capture_update AFTER UPDATE ON "public"."contacts" REFERENCING OLD TABLE AS tandem_old NEW TABLE AS tandem_new FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('id');
CREATE TRIGGER tandem_capture_delete AFTER DELETE ON "public"."contacts" REFERENCING OLD TABLE AS tandem_old FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('id');
CREATE TRIGGER tandem_capture_truncate AFTER TRUNCATE ON "public"."contacts" FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('id');
CREATE TRIGGER tandem_capture_insert AFTER INSERT ON "public"."Odd ""Name""" REFERENCING NEW TABLE AS tandem_new FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('k1', 'K 2');
CREATE TRIGGER tandem_capture_update AFTER UPDATE ON "public"."Odd ""Name""" REFERENCING OLD TABLE AS tandem_old NEW TABLE AS tandem_new FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('k1', 'K 2');
CREATE TRIGGER tandem_capture_delete AFTER DELETE ON "public"."Odd ""Name""" REFERENCING OLD TABLE AS tandem_old FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('k1', 'K 2');
CREATE TRIGGER tandem_capture_truncate AFTER TRUNCATE ON "public"."Odd ""Name""" FOR EACH STATEMENT EXECUTE FUNCTION tandem.capture('k1', 'K 2');
COMMIT;
