package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const crmDDL = `CREATE TABLE contacts (
	id bigserial PRIMARY KEY,
	full_name text,
	email text UNIQUE,
	phone text,
	notes text)`

const hubspotDDL = `CREATE TABLE hs_contacts (
	id bigserial PRIMARY KEY,
	firstname text,
	lastname text,
	email text UNIQUE,
	phone_number text,
	score int)`

// contactsFields is the field mapping most tests use.
const contactsFields = `      - { source: full_name, target: [firstname, lastname], transform: split_name }
      - { source: email, target: email, transform: lowercase }
      - { source: phone, target: phone_number }
`

// contactsYAML is the sync most tests run, with its extra YAML lines
// (indented four spaces, placed before fields).
func contactsYAML(extra string) string { return contactsYAMLWith(extra, contactsFields) }

// contactsYAMLWith is the contacts sync crm -> hubspot with other fields.
func contactsYAMLWith(extra, fields string) string {
	return `control: ${CTL}
nodes:
  crm: { dsn: "${CRM}" }
  hubspot: { dsn: "${HUB}" }
syncs:
  - id: contacts
    source: { node: crm, table: public.contacts }
    target: { node: hubspot, table: public.hs_contacts }
` + extra + "    fields:\n" + fields
}

// rig is a control database and nodes with capture installed, and an engine.
type rig struct {
	t     *testing.T
	ctl   *pgtest.DB
	nodes map[string]*pgtest.DB
	cfg   *config.Config
	eng   *engine.Engine
	yaml  string
	env   map[string]string
}

func newRig(t *testing.T, yaml string, ddl map[string]string) *rig {
	t.Helper()
	r := &rig{t: t, ctl: pgtest.NewDB(t), nodes: map[string]*pgtest.DB{}, yaml: yaml, env: map[string]string{}}
	r.env["CTL"] = r.ctl.URL
	for name, d := range ddl {
		db := pgtest.NewDB(t)
		db.Exec(t, d)
		r.nodes[name] = db
		r.env[strings.ToUpper(map[string]string{"crm": "crm", "hubspot": "hub", "gcontacts": "gc"}[name])] = db.URL
	}
	cfg, err := config.Parse("tandem.yaml", []byte(yaml), func(k string) (string, bool) { v, ok := r.env[k]; return v, ok })
	require.NoError(t, err)
	r.cfg = cfg
	ctx := context.Background()
	_, err = control.Migrate(ctx, r.ctl.Pool)
	require.NoError(t, err)
	pools := map[string]*pgxpool.Pool{}
	for name, db := range r.nodes {
		conn, err := pgx.Connect(ctx, db.URL)
		require.NoError(t, err)
		if cfg.Nodes[name].Capture == config.CaptureWAL {
			db.DropSlotsAtCleanup(t)
			installWAL(t, conn, name, cfg, r.slot(name))
		} else {
			_, err = capture.Install(ctx, conn, name, cfg.TablesOnNode(name), "tandem.yaml")
			require.NoError(t, err)
		}
		conn.Close(ctx)
		pools[name] = enginePool(t, db.URL)
	}
	r.eng = &engine.Engine{Config: cfg, Control: r.ctl.Pool, Nodes: pools, Logger: testLogger(t)}
	t.Cleanup(r.eng.Close)
	return r
}

// enginePool opens a pool on a node as the engine's (NodePoolConfig),
// closed when the test ends.
func enginePool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := engine.OpenNodePool(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// slot is the replication slot of a wal node for this rig's control database.
func (r *rig) slot(node string) string {
	id, err := control.InstanceID(context.Background(), r.ctl.Pool)
	require.NoError(r.t, err)
	return capture.SlotName(id, node)
}

// installWAL sets a node up for capture: wal.
func installWAL(t *testing.T, conn *pgx.Conn, node string, cfg *config.Config, slot string) {
	t.Helper()
	ctx := context.Background()
	_, err := capture.InstallWAL(ctx, conn, node, cfg.TablesOnNode(node), "tandem.yaml", slot)
	require.NoError(t, err)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// run runs a sync once and fails the test on error. A run cut off just
// before may leave its session (and the sync's lock) on the server for a
// moment: a busy sync is run again until it runs.
func (r *rig) run(id string) engine.Result {
	r.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		res, err := r.eng.RunSync(context.Background(), id, "manual")
		require.NoError(r.t, err)
		if !res.Busy {
			return res
		}
		require.True(r.t, time.Now().Before(deadline), "sync %s stayed busy for a minute", id)
	}
}

func (r *rig) exec(node, sql string, args ...any) {
	r.t.Helper()
	r.nodes[node].Exec(r.t, sql, args...)
}

// rows returns a table's rows (the given columns, ordered) as strings.
func (r *rig) rows(node, query string, args ...any) []string {
	r.t.Helper()
	return queryStrings(r.t, r.nodes[node].Pool, query, args...)
}

// ctlRows is rows on the control database.
func (r *rig) ctlRows(query string, args ...any) []string {
	r.t.Helper()
	return queryStrings(r.t, r.ctl.Pool, query, args...)
}

// queryStrings returns a query's rows, each row's values joined with "|".
func queryStrings(t *testing.T, pool *pgxpool.Pool, query string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), query, args...)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(t, err)
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	require.NoError(t, rows.Err())
	return out
}

func (r *rig) ctlInt(query string, args ...any) int {
	r.t.Helper()
	var n int
	require.NoError(r.t, r.ctl.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// runCtx runs a sync once with ctx and returns what RunSync returns.
func (r *rig) runCtx(ctx context.Context, id string) (engine.Result, error) {
	return r.eng.RunSync(ctx, id, "manual")
}

// idle runs a sync once and fails the test unless the run was idle and
// recorded no sync_runs row.
func (r *rig) idle(id string) {
	r.t.Helper()
	before := r.ctlInt("SELECT count(*) FROM tandem.sync_runs")
	res := r.run(id)
	require.True(r.t, res.Idle, "run of %s is not idle: %+v", id, res)
	require.Equal(r.t, before, r.ctlInt("SELECT count(*) FROM tandem.sync_runs"), "an idle run of %s recorded a sync_runs row", id)
}

func (r *rig) nodeInt(node, query string, args ...any) int {
	r.t.Helper()
	var n int
	require.NoError(r.t, r.nodes[node].Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// tableWrites returns n_tup_ins + n_tup_upd + n_tup_del of a table on a
// node once the statistics system holds at least atLeast of them. Backends
// flush their statistics at most once a second, or when they exit: the
// node's pools (the test's and the engine's) are reset so every backend
// that wrote exits and flushes, and the count is read until it shows them.
func (r *rig) tableWrites(node, table string, atLeast int) int {
	r.t.Helper()
	pool := r.nodes[node].Pool
	pool.Reset()
	r.eng.Nodes[node].Reset()
	read := func() (int, error) {
		conn, err := pool.Acquire(context.Background())
		if err != nil {
			return 0, err
		}
		defer conn.Release()
		if _, err := conn.Exec(context.Background(), "SELECT pg_stat_clear_snapshot()"); err != nil {
			return 0, err
		}
		var n int
		err = conn.QueryRow(context.Background(), `SELECT n_tup_ins + n_tup_upd + n_tup_del
			FROM pg_stat_user_tables WHERE relid = to_regclass($1)`, table).Scan(&n)
		return n, err
	}
	require.Eventually(r.t, func() bool {
		n, err := read()
		return err == nil && n >= atLeast
	}, time.Minute, 10*time.Millisecond, "statistics of %s on %s never reached %d writes", table, node, atLeast)
	n, err := read()
	require.NoError(r.t, err)
	return n
}

// plusGcontacts adds to yaml node gcontacts and sync "other", from table
// on hubspot to gcontacts' gc_people, its column col mapped to mail.
func plusGcontacts(yaml, table, col string) string {
	yaml += fmt.Sprintf(`  - id: other
    source: { node: hubspot, table: %s }
    target: { node: gcontacts, table: public.gc_people }
    fields:
      - { source: %s, target: mail }
`, table, col)
	return strings.Replace(yaml, `hubspot: { dsn: "${HUB}" }`, `hubspot: { dsn: "${HUB}" }
  gcontacts: { dsn: "${GC}" }`, 1)
}
