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
