package capture

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/config"
	sqlfiles "github.com/tandem-sync/tandem/sql"
)

// Trigger names tandem creates on each captured table, one per event:
// PostgreSQL allows transition tables only on single-event triggers.
var triggerEvents = []struct{ Name, Event, Referencing string }{
	{"tandem_capture_insert", "INSERT", "REFERENCING NEW TABLE AS tandem_new "},
	{"tandem_capture_update", "UPDATE", "REFERENCING OLD TABLE AS tandem_old NEW TABLE AS tandem_new "},
	{"tandem_capture_delete", "DELETE", "REFERENCING OLD TABLE AS tandem_old "},
	{"tandem_capture_truncate", "TRUNCATE", ""},
}

// installLockKey serializes installs and uninstalls on one database
// (pg_advisory_xact_lock); the value is arbitrary but fixed.
const installLockKey = 7_305_116_101_109

// table is one table to capture, resolved against the node's catalog.
type table struct {
	Schema, Name string
	Key          []string // configured key, or the primary key
	oid          uint32
	kind         string // pg_class.relkind: r, or p (partitioned)
	owned        bool   // the role has its owner's rights (publications need them)
	line         int    // its line in tandem.yaml
}

// Qualified returns schema.name as written in change rows.
func (t table) Qualified() string { return t.Schema + "." + t.Name }

func (t table) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Plan is the SQL an install or uninstall runs, statement by statement.
type Plan struct {
	Node       string
	Statements []string
	// After are statements run one at a time after COMMIT, each in its own
	// transaction: PostgreSQL refuses to create a logical replication slot
	// in a transaction that has written, and creating or dropping a slot
	// cannot be rolled back anyway.
	After []string
	// FromVersion and ToVersion are the capture versions before and after.
	FromVersion, ToVersion int
	// Added lists the tables that get triggers; Kept those already captured.
	Added, Kept []string
	// Notices are what the DBA should know about the node as planned; they
	// do not stop the plan.
	Notices []string

	// Capture: wal (PlanInstallWAL), and what uninstall removes of it.

	// Publication is what the plan does to publication tandem: "create",
	// "alter", "drop", or "" when it is left as it is.
	Publication string
	// Published lists the tables publication tandem publishes after a wal
	// install, in config order.
	Published []string
	// Slot is a wal node's replication slot; CreateSlot tells whether the
	// plan creates it (else it is there already).
	Slot       string
	CreateSlot bool
	// DropSlots lists the replication slots an uninstall drops.
	DropSlots []string
	// blocked says why the plan must not run yet (a slot still in use);
	// --print shows the plan anyway.
	blocked []string
}

// Empty reports whether the plan does nothing.
func (p *Plan) Empty() bool { return len(p.Statements) == 0 && len(p.After) == 0 }

// SQL returns the plan as one script, as `tandem install --print` shows it.
// Run by psql, it does what Apply does, but for the install lock.
func (p *Plan) SQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- tandem capture on node %s: version %d -> %d\n", p.Node, p.FromVersion, p.ToVersion)
	if p.Slot != "" {
		fmt.Fprintf(&b, "-- capture: wal: publication %s, replication slot %s (pgoutput)\n", Publication, p.Slot)
	}
	for _, n := range p.blocked {
		fmt.Fprintf(&b, "-- REFUSED for now: %s\n", n)
	}
	for _, n := range p.Notices {
		fmt.Fprintf(&b, "-- NOTE: %s\n", n)
	}
	if p.Empty() {
		b.WriteString("-- nothing to do: capture is installed and current for every configured table\n")
		return b.String()
	}
	if len(p.Statements) > 0 {
		b.WriteString("BEGIN;\n")
		for _, s := range p.Statements {
			writeStatement(&b, s)
		}
		b.WriteString("COMMIT;\n")
	}
	if len(p.After) > 0 {
		b.WriteString("-- after COMMIT, each on its own: a replication slot cannot be created or dropped\n")
		b.WriteString("-- in a transaction that has written\n")
		for _, s := range p.After {
			writeStatement(&b, s)
		}
	}
	return b.String()
}

func writeStatement(b *strings.Builder, s string) {
	b.WriteString(strings.TrimRight(s, "\n"))
	if !strings.HasSuffix(strings.TrimSpace(s), ";") {
		b.WriteString(";")
	}
	b.WriteString("\n")
}

// version is one file of sql/node.
type version struct {
	N    int
	Name string
	SQL  string
}

// versions returns the embedded capture versions in order.
func versions() ([]version, error) {
	entries, err := fs.ReadDir(sqlfiles.Node, "node")
	if err != nil {
		return nil, fmt.Errorf("reading embedded capture SQL: %w", err)
	}
	var vs []version
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("embedded capture SQL %s: name must start with NNNN_", e.Name())
		}
		body, err := fs.ReadFile(sqlfiles.Node, path.Join("node", e.Name()))
		if err != nil {
			return nil, err
		}
		vs = append(vs, version{N: n, Name: e.Name(), SQL: string(body)})
	}
	slices.SortFunc(vs, func(a, b version) int { return a.N - b.N })
	return vs, nil
}

// CurrentVersion is the capture version this binary installs.
func CurrentVersion() int {
	vs, err := versions()
	if err != nil || len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1].N
}

// PlanInstall inspects the node and returns what `tandem install` must run
// to capture tables: the capture schema at the current version, and the
// triggers of every table that lacks them or has them with another key.
// Catalog problems (missing table, no key, missing privilege) come back as
// *config.Problems naming the line of tandem.yaml.
func PlanInstall(ctx context.Context, q Querier, node string, tables []config.TableRef, file string) (*Plan, error) {
	st, err := inspect(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: inspecting capture state: %w", node, err)
	}
	probs := &config.Problems{File: file}
	resolved, err := resolveTables(ctx, q, node, tables, st, config.CaptureTrigger, probs)
	if err != nil {
		return nil, err
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	p, err := planSchema(node, st)
	if err != nil {
		return nil, err
	}
	for _, t := range resolved {
		have := st.captured[t.Qualified()]
		if have != nil && have.complete(t.Key) {
			p.Kept = append(p.Kept, t.Qualified())
			continue
		}
		if have != nil {
			p.Statements = append(p.Statements, dropTriggersSQL(have.ident, have.triggers)...)
		}
		p.Statements = append(p.Statements, createTriggersSQL(t)...)
		p.Added = append(p.Added, t.Qualified())
	}
	// A node switched from capture: wal keeps its slot until uninstall,
	// and a slot nobody reads retains WAL: say so rather than leave it
	// silently.
	left, err := readWALLeftovers(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	for _, s := range left.slots {
		p.Notices = append(p.Notices, fmt.Sprintf("replication slot %s on this database is left from capture: wal and retains WAL until dropped: SELECT pg_drop_replication_slot(%s); (tandem uninstall drops it too)", s.name, quoteLiteral(s.name)))
	}
	return p, nil
}

// planSchema starts a plan with what brings schema tandem to the current
// capture version. Wal nodes get it too: the engine records its applies in
// tandem.applied on every node.
func planSchema(node string, st *state) (*Plan, error) {
	vs, err := versions()
	if err != nil {
		return nil, err
	}
	p := &Plan{Node: node, FromVersion: st.version, ToVersion: max(st.version, vs[len(vs)-1].N)}
	if st.version > vs[len(vs)-1].N {
		return nil, fmt.Errorf("node %s has capture version %d, newer than this tandem (%d): upgrade tandem", node, st.version, vs[len(vs)-1].N)
	}
	if !st.schemaExists {
		p.Statements = append(p.Statements, "CREATE SCHEMA tandem;")
	}
	if !st.infoExists {
		p.Statements = append(p.Statements, infoTableSQL(!st.schemaExists))
	}
	for _, v := range vs {
		if v.N > st.version {
			p.Statements = append(p.Statements, fmt.Sprintf("-- capture version %d (%s)\n%s", v.N, v.Name, strings.TrimSpace(v.SQL)))
		}
	}
	if st.version < p.ToVersion {
		p.Statements = append(p.Statements, fmt.Sprintf("UPDATE tandem.capture_info SET version = %d, upgraded_at = now();", p.ToVersion))
	}
	return p, nil
}

func infoTableSQL(createdSchema bool) string {
	return fmt.Sprintf(`CREATE TABLE tandem.capture_info (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version        integer     NOT NULL,
    created_schema boolean     NOT NULL,
    installed_at   timestamptz NOT NULL DEFAULT now(),
    upgraded_at    timestamptz
);
INSERT INTO tandem.capture_info (version, created_schema) VALUES (0, %t);`, createdSchema)
}

// createTriggersSQL returns the CREATE TRIGGER statements for one table.
// The key columns are the trigger arguments (TG_ARGV).
func createTriggersSQL(t table) []string {
	args := make([]string, len(t.Key))
	for i, k := range t.Key {
		args[i] = quoteLiteral(k)
	}
	var out []string
	for _, e := range triggerEvents {
		out = append(out, fmt.Sprintf("CREATE TRIGGER %s AFTER %s ON %s %sFOR EACH STATEMENT EXECUTE FUNCTION tandem.capture(%s);",
			e.Name, e.Event, t.ident(), e.Referencing, strings.Join(args, ", ")))
	}
	return out
}

func dropTriggersSQL(table string, names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("DROP TRIGGER %s ON %s;", pgx.Identifier{n}.Sanitize(), table))
	}
	return out
}

// quoteLiteral quotes s as a SQL string literal (standard_conforming_strings
// is on in every supported PostgreSQL). Only catalog names reach it.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// PlanUninstall returns what `tandem uninstall` runs: every trigger tandem
// created, publication tandem and the database's tandem_* logical slots
// (whatever the node's capture mode now: it may have been switched), every
// capture object, and the schema if tandem created it and nothing else
// lives in it.
func PlanUninstall(ctx context.Context, q Querier, node string) (*Plan, error) {
	st, err := inspect(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: inspecting capture state: %w", node, err)
	}
	p := &Plan{Node: node, FromVersion: st.version}
	tables := slices.Sorted(maps.Keys(st.captured))
	for _, t := range tables {
		p.Statements = append(p.Statements, dropTriggersSQL(st.captured[t].ident, st.captured[t].triggers)...)
	}
	if err := planWALUninstall(ctx, q, p); err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	if !st.infoExists && len(tables) == 0 {
		return p, nil
	}
	p.Statements = append(p.Statements,
		"DROP VIEW IF EXISTS tandem.queue_tables, tandem.queue_status;",
		"DROP FUNCTION IF EXISTS tandem.capture(), tandem.row_key(jsonb, text, text[]);",
		"DROP TABLE IF EXISTS tandem.applied, tandem.consumers, tandem.change_queue, tandem.capture_info;",
		"DROP SEQUENCE IF EXISTS tandem.notify_seq;",
	)
	if st.createdSchema && st.othersInSchema == 0 {
		p.Statements = append(p.Statements, "DROP SCHEMA tandem;")
	}
	return p, nil
}

// Apply runs a plan's statements in one transaction under the install
// lock, after checking that the node still looks as it did when the plan
// was made, then its After statements one by one.
func Apply(ctx context.Context, conn *pgx.Conn, p *Plan, replan func(context.Context, pgx.Tx) (*Plan, error)) (*Plan, error) {
	// A session lock, not a transaction one: it must also cover the After
	// statements, so that two installs do not both plan a slot and race to
	// create it. Waiting for it assigns no transaction id, so a slot being
	// created elsewhere does not wait for the waiter in turn.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(installLockKey)); err != nil {
		return nil, fmt.Errorf("node %s: taking install lock: %w", p.Node, err)
	}
	// A failed unlock leaves the lock to the connection's end, which the
	// caller's Close brings.
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(installLockKey))
	p, err := applyTx(ctx, conn, p, replan)
	if err != nil {
		return nil, err
	}
	for _, s := range p.After {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, afterError(p, s, err)
		}
	}
	return p, nil
}

func applyTx(ctx context.Context, conn *pgx.Conn, p *Plan, replan func(context.Context, pgx.Tx) (*Plan, error)) (*Plan, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %s: beginning install: %w", p.Node, err)
	}
	defer tx.Rollback(ctx)
	// Another install may have run between planning and the lock: plan again
	// under the lock so what runs matches the node.
	if replan != nil {
		if p, err = replan(ctx, tx); err != nil {
			return nil, err
		}
	}
	if len(p.blocked) > 0 {
		return nil, fmt.Errorf("node %s: %s", p.Node, strings.Join(p.blocked, "; "))
	}
	for _, s := range p.Statements {
		if _, err := tx.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("node %s: running %q: %w", p.Node, firstLine(s), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("node %s: committing install: %w", p.Node, err)
	}
	return p, nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
			return l
		}
	}
	return s
}

// Install plans and applies capture for tables on a node connection.
func Install(ctx context.Context, conn *pgx.Conn, node string, tables []config.TableRef, file string) (*Plan, error) {
	p, err := PlanInstall(ctx, conn, node, tables, file)
	if err != nil {
		return nil, err
	}
	return Apply(ctx, conn, p, func(ctx context.Context, tx pgx.Tx) (*Plan, error) {
		return PlanInstall(ctx, tx, node, tables, file)
	})
}

// Uninstall removes every capture object from a node connection.
func Uninstall(ctx context.Context, conn *pgx.Conn, node string) (*Plan, error) {
	p, err := PlanUninstall(ctx, conn, node)
	if err != nil {
		return nil, err
	}
	return Apply(ctx, conn, p, func(ctx context.Context, tx pgx.Tx) (*Plan, error) {
		return PlanUninstall(ctx, tx, node)
	})
}

// ErrNotInstalled is returned when a node has no capture schema.
var ErrNotInstalled = errors.New("capture is not installed (run `tandem install NODE`)")
