package capture

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tandem-sync/tandem/internal/config"
)

// Querier is what install and the reader need of a connection: a *pgx.Conn,
// a pgx.Tx or a *pgxpool.Pool.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// state is what a node has of tandem capture.
type state struct {
	schemaExists, infoExists, createdSchema bool
	version                                 int
	othersInSchema                          int                       // objects in schema tandem that capture did not create
	captured                                map[string]*capturedTable // schema.table -> its capture triggers
}

// capturedTable is a table that has tandem capture triggers.
type capturedTable struct {
	ident    string   // quoted schema.table
	triggers []string // names of its tandem_capture_* triggers
	key      []string // the key columns the triggers pass
	owned    bool     // the role has its owner's rights (DROP TRIGGER needs them)
}

// complete reports whether the table has every capture trigger, with key.
func (c *capturedTable) complete(key []string) bool {
	return len(c.triggers) == len(triggerEvents) && slices.Equal(c.key, key)
}

// captureObjects are the relations and functions of every capture version; the
// rest of schema tandem (the control schema, when the control database is
// also a node) is not ours to drop.
var captureObjects = []string{"capture_info", "change_queue", "change_queue_pkey",
	"change_queue_id_seq", "consumers", "consumers_pkey", "notify_seq",
	"capture_info_pkey", "applied", "applied_pkey", "queue_status", "queue_tables", "capture", "row_key",
	"change_queue_origin"}

func inspect(ctx context.Context, q Querier) (*state, error) {
	st := &state{captured: map[string]*capturedTable{}}
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tandem'),
	                                to_regclass('tandem.capture_info') IS NOT NULL`).Scan(&st.schemaExists, &st.infoExists)
	if err != nil {
		return nil, err
	}
	if st.infoExists {
		if err := q.QueryRow(ctx, "SELECT version, created_schema FROM tandem.capture_info").Scan(&st.version, &st.createdSchema); err != nil {
			return nil, fmt.Errorf("reading tandem.capture_info: %w", err)
		}
	}
	if st.schemaExists {
		err := q.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			        WHERE n.nspname = 'tandem' AND NOT c.relname = ANY ($1))
			     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			        WHERE n.nspname = 'tandem' AND NOT p.proname = ANY ($1))
			     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
			        WHERE n.nspname = 'tandem' AND t.typrelid = 0 AND t.typelem = 0)`, captureObjects).Scan(&st.othersInSchema)
		if err != nil {
			return nil, fmt.Errorf("listing schema tandem: %w", err)
		}
	}
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, t.tgname, t.tgargs, pg_has_role(c.relowner, 'USAGE')
		FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_proc p ON p.oid = t.tgfoid
		JOIN pg_namespace pn ON pn.oid = p.pronamespace
		WHERE pn.nspname = 'tandem' AND p.proname = 'capture' AND NOT t.tgisinternal
		ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("listing capture triggers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, name string
		var args []byte
		var owned bool
		if err := rows.Scan(&schema, &table, &name, &args, &owned); err != nil {
			return nil, err
		}
		k := schema + "." + table
		c := st.captured[k]
		if c == nil {
			c = &capturedTable{ident: pgx.Identifier{schema, table}.Sanitize(), key: splitTriggerArgs(args), owned: owned}
			st.captured[k] = c
		}
		c.triggers = append(c.triggers, name)
	}
	return st, rows.Err()
}

// splitTriggerArgs decodes pg_trigger.tgargs: each argument ends with NUL.
func splitTriggerArgs(b []byte) []string {
	var out []string
	for _, a := range bytes.Split(b, []byte{0}) {
		if len(a) > 0 {
			out = append(out, string(a))
		}
	}
	return out
}

// resolveTables checks each configured table against the node's catalog and
// fills in its key. Problems go to probs, each with its line, so that the
// caller reports them at once with its own; mode (config.CaptureTrigger or
// CaptureWAL) says which privileges the capture needs.
func resolveTables(ctx context.Context, q Querier, node string, refs []config.TableRef, st *state, mode string, probs *config.Problems) ([]table, error) {
	if !st.schemaExists {
		var can bool
		var role string
		if err := q.QueryRow(ctx, "SELECT has_database_privilege(current_database(), 'CREATE'), current_user").Scan(&can, &role); err != nil {
			return nil, fmt.Errorf("node %s: checking privileges: %w", node, err)
		}
		if !can {
			probs.Add(0, "nodes."+node, "role %s may not create schema tandem: GRANT CREATE ON DATABASE <db> TO %s (or create schema tandem owned by %s)", role, role, role)
		}
	}
	var out []table
	for _, ref := range refs {
		t, ok, err := resolveTable(ctx, q, node, ref, mode, probs)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func resolveTable(ctx context.Context, q Querier, node string, ref config.TableRef, mode string, probs *config.Problems) (table, bool, error) {
	t := table{Schema: ref.Schema, Name: ref.Name, line: ref.Line}
	where := fmt.Sprintf("table %s on node %s", t.Qualified(), node)
	var (
		canTrig bool
		role    string
	)
	err := q.QueryRow(ctx, `
		SELECT c.oid, c.relkind::text, has_table_privilege(c.oid, 'TRIGGER'), pg_has_role(c.relowner, 'USAGE'), current_user
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, ref.Schema, ref.Name).Scan(&t.oid, &t.kind, &canTrig, &t.owned, &role)
	if err == pgx.ErrNoRows {
		probs.Add(ref.Line, "table", "%s does not exist", where)
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("node %s: looking up %s: %w", node, t.Qualified(), err)
	}
	if t.kind != "r" && t.kind != "p" {
		probs.Add(ref.Line, "table", "%s is not a table (relkind %s): only tables can be captured", where, t.kind)
		return t, false, nil
	}
	// A wal node needs no trigger; what it needs of its tables (ownership,
	// replica identity) is checked by PlanInstallWAL.
	if mode == config.CaptureTrigger && !canTrig {
		probs.Add(ref.Line, "table", "role %s may not create triggers on %s: GRANT TRIGGER ON %s TO %s", role, where, t.ident(), role)
	}
	cols, pk, err := columnsAndKey(ctx, q, t.oid)
	if err != nil {
		return t, false, fmt.Errorf("node %s: reading columns of %s: %w", node, t.Qualified(), err)
	}
	t.Key = ref.Key
	if len(t.Key) == 0 {
		t.Key = pk
	}
	if len(t.Key) == 0 && mode == config.CaptureWAL {
		probs.Add(ref.Line, "table", "%s has no primary key and the config gives no key: add a primary key (it is also the replica identity that lets updates and deletes be decoded), or `key: [column, ...]` naming columns that identify a row, and ALTER TABLE %s REPLICA IDENTITY FULL;", where, t.ident())
		return t, false, nil
	}
	if len(t.Key) == 0 {
		probs.Add(ref.Line, "table", "%s has no primary key and the config gives no key: add a primary key, or `key: [column, ...]` naming columns that identify a row", where)
		return t, false, nil
	}
	for _, k := range t.Key {
		if !slices.Contains(cols, k) {
			probs.Add(ref.Line, "key", "%s has no column %q named in key (columns: %s)", where, k, strings.Join(cols, ", "))
			return t, false, nil
		}
	}
	return t, true, nil
}

func columnsAndKey(ctx context.Context, q Querier, oid uint32) (cols, pk []string, err error) {
	rows, err := q.Query(ctx, `
		SELECT a.attname, coalesce((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) WHERE k.attnum = a.attnum), 0)
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	pos := map[string]int{}
	for rows.Next() {
		var name string
		var p int
		if err := rows.Scan(&name, &p); err != nil {
			return nil, nil, err
		}
		cols = append(cols, name)
		if p > 0 {
			pos[name] = p
			pk = append(pk, name)
		}
	}
	slices.SortFunc(pk, func(a, b string) int { return pos[a] - pos[b] })
	return cols, pk, rows.Err()
}
