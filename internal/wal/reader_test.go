package wal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
	"github.com/tandem-sync/tandem/internal/wal"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const itemsDDL = `CREATE TABLE items (
	id    serial PRIMARY KEY,
	name  text,
	score int,
	price numeric,
	ok    boolean,
	at    timestamptz,
	tags  text[],
	doc   jsonb,
	big   text
);
ALTER TABLE items REPLICA IDENTITY FULL;
ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL; -- toasted uncompressed: an UPDATE of other columns sends it as unchanged
CREATE TABLE other (id int PRIMARY KEY, v text);      -- not published
CREATE PUBLICATION tandem FOR TABLE items;`

// walRig is a node with a publication and slot, a control database, and a
// reader streaming the one into the other.
type walRig struct {
	t          *testing.T
	node, ctl  *pgtest.DB
	slot       string
	readers    []*wal.Reader
	lastLogged int64
}

func newWALRig(t *testing.T, c *pgtest.Cluster) *walRig {
	t.Helper()
	ctx := context.Background()
	r := &walRig{t: t, node: c.NewDB(t), ctl: c.NewDB(t)}
	r.node.Exec(t, itemsDDL)
	_, err := control.Migrate(ctx, r.ctl.Pool)
	require.NoError(t, err)
	id, err := control.InstanceID(ctx, r.ctl.Pool)
	require.NoError(t, err)
	r.slot = capture.SlotName(id, "shop")
	r.node.DropSlotsAtCleanup(t)
	r.node.Exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, r.slot)
	t.Cleanup(func() {
		for _, rd := range r.readers {
			rd.Close()
		}
	})
	return r
}

func (r *walRig) reader() *wal.Reader {
	rd := &wal.Reader{Node: "shop", NodeDB: r.node.Pool, Control: r.ctl.Pool, Slot: r.slot}
	r.readers = append(r.readers, rd)
	return rd
}

// logged is a change_log row as tests compare it.
type logged struct {
	Op, Table      string
	Keys, Old, New map[string]any
	Origin         *string
}

// pull pulls and returns the change_log rows the pull added.
func (r *walRig) pull(rd *wal.Reader) []logged {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := rd.Pull(ctx)
	require.NoError(r.t, err)
	rows, err := r.ctl.Pool.Query(ctx, `SELECT id, op, table_name, keys, old, new, origin FROM tandem.change_log
		WHERE id > $1 ORDER BY id`, r.lastLogged)
	require.NoError(r.t, err)
	var out []logged
	for rows.Next() {
		var l logged
		var keys, old, nw []byte
		require.NoError(r.t, rows.Scan(&r.lastLogged, &l.Op, &l.Table, &keys, &old, &nw, &l.Origin))
		l.Keys, l.Old, l.New = obj(r.t, keys), obj(r.t, old), obj(r.t, nw)
		out = append(out, l)
	}
	require.NoError(r.t, rows.Err())
	return out
}

func obj(t *testing.T, b []byte) map[string]any {
	if b == nil {
		return nil
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestEveryKindOfChangeIsLoggedAsTriggerCaptureLogsIt(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	require.Empty(t, r.pull(rd))

	// A multi-row transaction, mixing a published and an unpublished table.
	r.node.Exec(t, `BEGIN;
		INSERT INTO items (name, score, price, ok, at, tags, doc) VALUES
			('a', 1, 9.50, true, '2024-01-02 03:04:05.5+00', '{x,"y z"}', '{"k": [1, 2]}'),
			('b', NULL, 'NaN', false, NULL, NULL, NULL);
		INSERT INTO other VALUES (1, 'not synced');
		COMMIT`)
	got := r.pull(rd)
	require.Len(t, got, 2)
	require.Equal(t, logged{Op: "insert", Table: "public.items", Keys: map[string]any{"id": 1.0},
		New: map[string]any{"id": 1.0, "name": "a", "score": 1.0, "price": 9.5, "ok": true, "at": "2024-01-02T03:04:05.5+00:00",
			"tags": []any{"x", "y z"}, "doc": map[string]any{"k": []any{1.0, 2.0}}, "big": nil}}, got[0])
	require.Equal(t, map[string]any{"id": 2.0, "name": "b", "score": nil, "price": "NaN", "ok": false, "at": nil, "tags": nil, "doc": nil, "big": nil}, got[1].New)

	// An update keeps the changed columns only; one that changes nothing logs nothing.
	r.node.Exec(t, `UPDATE items SET score = 2, name = 'a' WHERE id = 1`)
	r.node.Exec(t, `UPDATE items SET name = 'b' WHERE id = 2`)
	got = r.pull(rd)
	require.Equal(t, []logged{{Op: "update", Table: "public.items", Keys: map[string]any{"id": 1.0},
		Old: map[string]any{"score": 1.0}, New: map[string]any{"score": 2.0}}}, got)

	// A key change is a delete of the old key and an insert of the new row.
	r.node.Exec(t, `UPDATE items SET id = 10, name = 'moved' WHERE id = 2`)
	got = r.pull(rd)
	require.Len(t, got, 2)
	require.Equal(t, []string{"delete", "insert"}, []string{got[0].Op, got[1].Op})
	require.Equal(t, map[string]any{"id": 2.0}, got[0].Keys)
	require.Equal(t, "b", got[0].Old["name"])
	require.Equal(t, map[string]any{"id": 10.0}, got[1].Keys)
	require.Equal(t, "moved", got[1].New["name"])

	// Delete and truncate.
	r.node.Exec(t, `DELETE FROM items WHERE id = 10`)
	r.node.Exec(t, `TRUNCATE items`)
	got = r.pull(rd)
	require.Len(t, got, 2)
	require.Equal(t, logged{Op: "delete", Table: "public.items", Keys: map[string]any{"id": 10.0},
		Old: map[string]any{"id": 10.0, "name": "moved", "score": nil, "price": "NaN", "ok": false, "at": nil, "tags": nil, "doc": nil, "big": nil}}, got[0])
	require.Equal(t, "truncate", got[1].Op)
}

func TestUnchangedToastIsNotANull(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	big := strings.Repeat("0123456789", 1000) // stored out of line
	r.node.Exec(t, `INSERT INTO items (name, big) VALUES ('a', $1)`, big)
	got := r.pull(rd)
	require.Equal(t, big, got[0].New["big"])
	r.node.Exec(t, `UPDATE items SET name = 'b' WHERE id = 1`)
	got = r.pull(rd)
	require.Equal(t, []logged{{Op: "update", Table: "public.items", Keys: map[string]any{"id": 1.0},
		Old: map[string]any{"name": "a"}, New: map[string]any{"name": "b"}}}, got, "big is neither changed nor null")
}

func TestLargeTransactionAndOrigin(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	// More rows than one COPY chunk: they go to change_log in one control transaction.
	r.node.Exec(t, `INSERT INTO items (name, score) SELECT 'n' || g, g FROM generate_series(1, 12000) g`)
	// tandem's own write: the message names its sync.
	r.node.Exec(t, `BEGIN; SELECT pg_logical_emit_message(true, 'tandem.origin', 'contacts');
		UPDATE items SET score = -1 WHERE id <= 3; COMMIT`)
	got := r.pull(rd)
	require.Len(t, got, 12003)
	require.Nil(t, got[0].Origin)
	require.Equal(t, "n12000", got[11999].New["name"])
	for _, l := range got[12000:] {
		require.Equal(t, "update", l.Op)
		require.NotNil(t, l.Origin)
		require.Equal(t, "contacts", *l.Origin)
	}
}

// Each change carries its transaction's full id (xid8), as trigger capture
// records it: the initial sync's handoff tells by it what a snapshot saw.
func TestChangesCarryTheirTransactionID(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	var want []string
	for i := range 3 {
		var xid string
		err := pgx.BeginFunc(context.Background(), r.node.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(context.Background(), `INSERT INTO items (name) VALUES ($1)`, fmt.Sprint(i)); err != nil {
				return err
			}
			return tx.QueryRow(context.Background(), `SELECT pg_current_xact_id()::text`).Scan(&xid)
		})
		require.NoError(t, err)
		want = append(want, xid)
	}
	require.Len(t, r.pull(rd), 3)
	var got []string
	rows, err := r.ctl.Pool.Query(context.Background(), `SELECT xid::text FROM tandem.change_log ORDER BY id`)
	require.NoError(t, err)
	got, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// Invariant: nothing lost, nothing twice across a reader's restart. The
// slot may still hold a transaction the last reader wrote (it confirms
// after its control commit): the new reader skips it.
func TestRestartNeitherLosesNorRepeats(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	for round := range 5 {
		rd := r.reader()
		r.node.Exec(t, fmt.Sprintf(`INSERT INTO items (name) SELECT 'r%d-' || g FROM generate_series(1, 100) g`, round))
		want := 100
		if round > 0 {
			want++ // the row written while no reader ran
		}
		require.Len(t, r.pull(rd), want)
		rd.Close()
		// Written while no reader runs.
		r.node.Exec(t, fmt.Sprintf(`INSERT INTO items (name) VALUES ('gap%d')`, round))
	}
	got := r.pull(r.reader())
	require.Len(t, got, 1)
	var n, distinct int
	require.NoError(t, r.ctl.Pool.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT new ->> 'name') FROM tandem.change_log`).Scan(&n, &distinct))
	require.Equal(t, 505, n)
	require.Equal(t, 505, distinct)
}

// A slot whose tables go unwritten does not pin WAL: its confirmed
// position follows the server's.
func TestQuietSlotDoesNotPinWAL(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	r.pull(rd)
	r.node.Exec(t, `INSERT INTO other SELECT g, repeat('x', 1000) FROM generate_series(1, 5000) g`) // unpublished: MBs of WAL
	var written string
	require.NoError(t, r.node.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_flush_lsn()::text`).Scan(&written))
	require.Empty(t, r.pull(rd))
	require.Eventually(t, func() bool {
		var behind bool
		require.NoError(t, r.node.Pool.QueryRow(context.Background(),
			`SELECT confirmed_flush_lsn < $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, r.slot, written).Scan(&behind))
		return !behind
	}, 10*time.Second, 10*time.Millisecond, "the slot's confirmed position stayed behind the unpublished writes")
}

func TestSlotDroppedUnderneathIsAnError(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	r.pull(rd)
	// What an operator would do: end the walsender and drop its slot (the
	// reader reconnects at once, so it may take a few tries).
	require.Eventually(t, func() bool {
		_, err := r.node.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, r.slot)
		require.NoError(t, err)
		_, err = r.node.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, r.slot)
		return err == nil
	}, 10*time.Second, time.Millisecond)
	r.node.Exec(t, `INSERT INTO items (name) VALUES ('lost')`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := rd.Pull(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), r.slot)
	require.Contains(t, err.Error(), "does not exist")
	require.NoError(t, ctx.Err(), "it failed at once, not at the deadline")
}

// The stream reconnects after the node restarts, and what was written
// meanwhile arrives once.
func TestNodeRestartWhileStreaming(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(pgtest.Options{})
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	r := newWALRig(t, c)
	rd := r.reader()
	r.node.Exec(t, `INSERT INTO items (name) VALUES ('before')`)
	require.Len(t, r.pull(rd), 1)
	require.NoError(t, c.Restart())
	r.node.Pool.Reset()
	r.ctl.Pool.Reset()
	r.node.Exec(t, `INSERT INTO items (name) VALUES ('after')`)
	got := r.pull(rd)
	require.Len(t, got, 1)
	require.Equal(t, "after", got[0].New["name"])
}

// Past max_retained_wal, a pull fails loudly instead of the node's disk
// filling silently.
func TestRetainedWALOverItsCapFails(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	rd := r.reader()
	r.pull(rd)
	rd.Close()
	// Another client holds the slot and confirms nothing: the position
	// stays where it was while the node writes.
	holder := holdSlot(t, r)
	defer holder.Close(context.Background())
	r.node.Exec(t, `INSERT INTO other SELECT g, repeat('x', 1000) FROM generate_series(1, 5000) g`)
	capped := r.reader()
	capped.MaxRetained = 1 << 20
	_, err := capped.Pull(context.Background())
	require.ErrorContains(t, err, "over max_retained_wal (1 MB)")
	require.ErrorContains(t, err, r.slot)
}

// holdSlot streams the rig's slot on a connection of its own, confirming
// nothing.
func holdSlot(t *testing.T, r *walRig) *pgconn.PgConn {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(r.node.URL)
	require.NoError(t, err)
	cfg.RuntimeParams["replication"] = "database"
	var conn *pgconn.PgConn
	require.Eventually(t, func() bool { // the last reader's walsender may still hold it
		if conn, err = pgconn.ConnectConfig(ctx, cfg); err != nil {
			return false
		}
		err = pglogrepl.StartReplication(ctx, conn, r.slot, 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'tandem'"}})
		if err != nil {
			conn.Close(ctx)
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	return conn
}

// A row of many types comes out of the stream as to_jsonb renders it (the
// session in UTC, as the stream renders timestamps).
func TestValuesAreRenderedAsToJSONBRendersThem(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	r.node.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok');
		CREATE TABLE typed (id bigint PRIMARY KEY, i2 smallint, i4 int, f4 real, f8 double precision, n numeric,
			b boolean, t text, vc varchar(10), d date, ts timestamp, tstz timestamptz, tm time, iv interval,
			u uuid, by bytea, j json, jb jsonb, ia int[], ta text[], na numeric[], tsa timestamptz[], m mood, inet inet);
		ALTER PUBLICATION tandem ADD TABLE typed`)
	rd := r.reader()
	r.pull(rd)
	r.node.Exec(t, `INSERT INTO typed VALUES (1, -2, 40000, 1.5, 2.25, 12345678901234567890.123, true, 'a "q" \ b', 'v',
		'2024-02-29', '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.5+02', '10:11:12', '1 day 02:03:04',
		'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff', '{"a": [1, "x"]}', '{"b": {"c": null}}',
		'{1,NULL,3}', '{"x y",z}', '{1.5,NaN}', '{"2024-01-01 00:00:00+00"}', 'ok', '10.0.0.1/8')`)
	r.node.Exec(t, `INSERT INTO typed (id, ia, ta) VALUES (2, '{}', '{{a,b},{c,NULL}}')`)
	require.Len(t, r.pull(rd), 2)
	for id := 1; id <= 2; id++ {
		var doc string // as change_log holds it: no float64 on the way
		require.NoError(t, r.ctl.Pool.QueryRow(context.Background(),
			`SELECT new::text FROM tandem.change_log WHERE table_name = 'public.typed' AND keys = jsonb_build_object('id', $1::int)`, id).Scan(&doc))
		var same bool
		var want string
		require.NoError(t, pgx.BeginFunc(context.Background(), r.node.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(context.Background(), `SET LOCAL TimeZone = 'UTC'`); err != nil {
				return err
			}
			return tx.QueryRow(context.Background(), `SELECT to_jsonb(x) = $1::jsonb, to_jsonb(x)::text FROM typed x WHERE id = $2`, doc, id).Scan(&same, &want)
		}))
		require.True(t, same, "stream: %s\nto_jsonb: %s", doc, want)
	}
}

// Invariant 1 (nothing twice): the slot's position moves only after
// change_log has the rows, so after a crash between the two the slot
// replays transactions the cursor already covers. The stream skips them.
// A copy of the slot made before the first pull stands for such a slot.
func TestASlotBehindTheCursorReplaysNothingTwice(t *testing.T) {
	t.Parallel()
	r := newWALRig(t, pgtest.Shared(t))
	r.node.Exec(t, `INSERT INTO items (name) VALUES ('one'), ('two')`)
	behind := r.slot + "_behind"
	r.node.Exec(t, `SELECT pg_copy_logical_replication_slot($1, $2)`, r.slot, behind)
	first := r.reader()
	require.Len(t, r.pull(first), 2)
	first.Close()

	r.node.Exec(t, `INSERT INTO items (name) VALUES ('three')`)
	lagging := r.reader()
	lagging.Slot = behind // still before 'one' and 'two'
	got := r.pull(lagging)
	require.Len(t, got, 1, "the rows the cursor covers are not written again")
	require.Equal(t, "three", got[0].New["name"])
}
