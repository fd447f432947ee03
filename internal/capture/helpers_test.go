package capture_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const contactsDDL = `CREATE TABLE public.contacts (
	id    serial PRIMARY KEY,
	name  text,
	email text UNIQUE,
	score int,
	notes text
)`

// newNode returns a database with the contacts table and capture installed.
func newNode(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsDDL)
	install(t, db, config.TableRef{Schema: "public", Name: "contacts", Line: 1})
	return db
}

func install(t *testing.T, db *pgtest.DB, tables ...config.TableRef) *capture.Plan {
	t.Helper()
	conn := connect(t, db.URL)
	p, err := capture.Install(context.Background(), conn, "crm", tables, "tandem.yaml")
	require.NoError(t, err)
	return p
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// change is a row of tandem.change_queue or change_log, as tests compare it.
type change struct {
	Table  string
	Op     string
	Keys   map[string]any
	Old    map[string]any
	New    map[string]any
	Origin *string
}

// queue returns the node's queue in capture order, then empties it.
func drainQueue(t *testing.T, db *pgtest.DB) []change {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Pool.Query(ctx, "SELECT table_name, op, keys, old, new, origin FROM tandem.change_queue ORDER BY id")
	require.NoError(t, err)
	out := scanChanges(t, rows)
	db.Exec(t, "DELETE FROM tandem.change_queue")
	return out
}

func scanChanges(t *testing.T, rows pgx.Rows) []change {
	t.Helper()
	var out []change
	for rows.Next() {
		var c change
		var keys, old, new []byte
		require.NoError(t, rows.Scan(&c.Table, &c.Op, &keys, &old, &new, &c.Origin))
		c.Keys, c.Old, c.New = jsonMap(t, keys), jsonMap(t, old), jsonMap(t, new)
		out = append(out, c)
	}
	require.NoError(t, rows.Err())
	return out
}

func jsonMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if b == nil {
		return nil
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// newControl returns a migrated control database.
func newControl(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t)
	_, err := control.Migrate(context.Background(), db.Pool)
	require.NoError(t, err)
	return db
}

func newReader(t *testing.T, node, ctl *pgtest.DB) *capture.Reader {
	t.Helper()
	id, err := control.InstanceID(context.Background(), ctl.Pool)
	require.NoError(t, err)
	return &capture.Reader{Node: "crm", NodeDB: node.Pool, Control: ctl.Pool, Consumer: id}
}

// pgtestDBWith returns a fresh database after running ddl.
func pgtestDBWith(t *testing.T, ddl string) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(t, ddl)
	return db
}

func tableRef(name string) config.TableRef {
	return config.TableRef{Schema: "public", Name: name, Line: 1}
}
