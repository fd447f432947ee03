package capture_test

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
)

func ptr(s string) *string { return &s }

// num is how encoding/json decodes a JSON number into any.
func num(n float64) any { return n }

func TestTriggerCapturesEveryStatementKind(t *testing.T) {
	t.Parallel()
	db := newNode(t)
	ctx := context.Background()
	const tbl = "public.contacts"

	cases := []struct {
		name string
		run  func(t *testing.T)
		want []change
	}{
		{"single insert", func(t *testing.T) {
			db.Exec(t, "INSERT INTO contacts (id, name, email, score) VALUES (1, 'Ann', 'ann@x', 5)")
		}, []change{{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(1)},
			New: map[string]any{"id": num(1), "name": "Ann", "email": "ann@x", "score": num(5), "notes": nil}}}},
		{"multi-row insert", func(t *testing.T) {
			db.Exec(t, "INSERT INTO contacts (id, name) VALUES (2, 'Bob'), (3, 'Cy')")
		}, []change{
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(2)}, New: map[string]any{"id": num(2), "name": "Bob", "email": nil, "score": nil, "notes": nil}},
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(3)}, New: map[string]any{"id": num(3), "name": "Cy", "email": nil, "score": nil, "notes": nil}},
		}},
		{"update keeps only changed columns", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET score = 6, name = 'Ann' WHERE id = 1")
		}, []change{{Table: tbl, Op: "update", Keys: map[string]any{"id": num(1)},
			Old: map[string]any{"score": num(5)}, New: map[string]any{"score": num(6)}}}},
		{"update to NULL", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET email = NULL WHERE id = 1")
		}, []change{{Table: tbl, Op: "update", Keys: map[string]any{"id": num(1)},
			Old: map[string]any{"email": "ann@x"}, New: map[string]any{"email": nil}}}},
		{"no-op update records nothing", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET name = name")
		}, nil},
		{"update matching no row records nothing", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET name = 'x' WHERE id = 999")
		}, nil},
		{"bulk update records only rows that changed", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET score = 0 WHERE id IN (2, 3)")
			db.Exec(t, "UPDATE contacts SET score = 0 WHERE id IN (1, 2, 3)")
		}, []change{
			{Table: tbl, Op: "update", Keys: map[string]any{"id": num(2)}, Old: map[string]any{"score": nil}, New: map[string]any{"score": num(0)}},
			{Table: tbl, Op: "update", Keys: map[string]any{"id": num(3)}, Old: map[string]any{"score": nil}, New: map[string]any{"score": num(0)}},
			{Table: tbl, Op: "update", Keys: map[string]any{"id": num(1)}, Old: map[string]any{"score": num(6)}, New: map[string]any{"score": num(0)}},
		}},
		{"key change is a delete and an insert", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET id = 30 WHERE id = 3")
		}, []change{
			{Table: tbl, Op: "delete", Keys: map[string]any{"id": num(3)}, Old: map[string]any{"id": num(3), "name": "Cy", "email": nil, "score": num(0), "notes": nil}},
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(30)}, New: map[string]any{"id": num(30), "name": "Cy", "email": nil, "score": num(0), "notes": nil}},
		}},
		{"insert on conflict: one insert, one update, one unchanged", func(t *testing.T) {
			db.Exec(t, `INSERT INTO contacts (id, name, score) VALUES (4, 'Dee', 1), (2, 'Bobby', 0), (1, 'Ann', 0)
				ON CONFLICT (id) DO UPDATE SET name = excluded.name, score = excluded.score`)
		}, []change{ // PostgreSQL fires the statement's UPDATE trigger before its INSERT trigger
			{Table: tbl, Op: "update", Keys: map[string]any{"id": num(2)}, Old: map[string]any{"name": "Bob"}, New: map[string]any{"name": "Bobby"}},
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(4)}, New: map[string]any{"id": num(4), "name": "Dee", "email": nil, "score": num(1), "notes": nil}},
		}},
		{"delete keeps the old row", func(t *testing.T) {
			db.Exec(t, "DELETE FROM contacts WHERE id = 4")
		}, []change{{Table: tbl, Op: "delete", Keys: map[string]any{"id": num(4)},
			Old: map[string]any{"id": num(4), "name": "Dee", "email": nil, "score": num(1), "notes": nil}}}},
		{"COPY", func(t *testing.T) {
			conn := connect(t, db.URL)
			_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("5\tEve\teve@x\t\\N\tmulti\\nline\n6\tFay\t\\N\t7\t\\N\n"),
				"COPY contacts (id, name, email, score, notes) FROM STDIN")
			require.NoError(t, err)
		}, []change{
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(5)}, New: map[string]any{"id": num(5), "name": "Eve", "email": "eve@x", "score": nil, "notes": "multi\nline"}},
			{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(6)}, New: map[string]any{"id": num(6), "name": "Fay", "email": nil, "score": num(7), "notes": nil}},
		}},
		{"origin is recorded when set", func(t *testing.T) {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SELECT set_config('tandem.origin', 'sync:contacts', true)")
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "UPDATE contacts SET notes = 'from sync' WHERE id = 6")
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))
		}, []change{{Table: tbl, Op: "update", Keys: map[string]any{"id": num(6)},
			Old: map[string]any{"notes": nil}, New: map[string]any{"notes": "from sync"}, Origin: ptr("sync:contacts")}}},
		{"rolled back transaction leaves nothing", func(t *testing.T) {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "INSERT INTO contacts (id, name) VALUES (100, 'ghost')")
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "UPDATE contacts SET score = 99")
			require.NoError(t, err)
			require.NoError(t, tx.Rollback(ctx))
		}, nil},
		{"rolled back savepoint leaves nothing of it", func(t *testing.T) {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SAVEPOINT s; UPDATE contacts SET score = 42 WHERE id = 5; ROLLBACK TO SAVEPOINT s; UPDATE contacts SET score = 43 WHERE id = 5")
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))
		}, []change{{Table: tbl, Op: "update", Keys: map[string]any{"id": num(5)}, Old: map[string]any{"score": nil}, New: map[string]any{"score": num(43)}}}},
		{"single-row no-op update records nothing", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET name = name, score = score WHERE id = 5")
		}, nil},
		{"multi-row key change: deletes, then inserts", func(t *testing.T) {
			db.Exec(t, "UPDATE contacts SET id = id + 100 WHERE id IN (5, 6)")
			got := drainQueue(t, db)
			// Deletes must come first; rows of one op come in no set order.
			require.Len(t, got, 4)
			require.Equal(t, []string{"delete", "delete", "insert", "insert"}, []string{got[0].Op, got[1].Op, got[2].Op, got[3].Op})
			slices.SortFunc(got, func(a, b change) int {
				return cmp.Or(strings.Compare(a.Op, b.Op), cmp.Compare(a.Keys["id"].(float64), b.Keys["id"].(float64)))
			})
			require.Equal(t, []change{
				{Table: tbl, Op: "delete", Keys: map[string]any{"id": num(5)}, Old: map[string]any{"id": num(5), "name": "Eve", "email": "eve@x", "score": num(43), "notes": "multi\nline"}},
				{Table: tbl, Op: "delete", Keys: map[string]any{"id": num(6)}, Old: map[string]any{"id": num(6), "name": "Fay", "email": nil, "score": num(7), "notes": "from sync"}},
				{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(105)}, New: map[string]any{"id": num(105), "name": "Eve", "email": "eve@x", "score": num(43), "notes": "multi\nline"}},
				{Table: tbl, Op: "insert", Keys: map[string]any{"id": num(106)}, New: map[string]any{"id": num(106), "name": "Fay", "email": nil, "score": num(7), "notes": "from sync"}},
			}, got)
		}, nil},
		{"truncate is one change", func(t *testing.T) {
			db.Exec(t, "TRUNCATE contacts")
		}, []change{{Table: tbl, Op: "truncate"}}},
	}
	// The cases build on each other's rows, so they run in order.
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t)
			require.Equal(t, c.want, drainQueue(t, db))
		})
	}
}

func TestCompositeKeyAndCapturedMetadata(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, `CREATE TABLE public.lines (order_id int, line int, qty int, PRIMARY KEY (order_id, line))`)
	install(t, db, tableRef("lines"))
	db.Exec(t, "INSERT INTO lines VALUES (1, 1, 5), (1, 2, 6)")
	db.Exec(t, "UPDATE lines SET qty = qty + 1 WHERE order_id = 1")
	got := drainQueue(t, db)
	require.Len(t, got, 4)
	require.Equal(t, map[string]any{"order_id": num(1), "line": num(2)}, got[3].Keys)
	require.Equal(t, map[string]any{"qty": num(7)}, got[3].New)

	// xid and captured_at describe the writing transaction and statement.
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	var xid string
	require.NoError(t, tx.QueryRow(ctx, "UPDATE lines SET qty = 0 WHERE line = 1 RETURNING pg_current_xact_id()::text").Scan(&xid))
	require.NoError(t, tx.Commit(ctx))
	var gotXid string
	var fresh bool
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT xid::text, captured_at > now() - interval '1 minute' FROM tandem.change_queue").Scan(&gotXid, &fresh))
	require.Equal(t, xid, gotXid)
	require.True(t, fresh)
}

// Capture renders a row under fixed settings (version 4), whatever the
// writing session's: the same row written from sessions with other time
// zones, interval styles and float digits is captured alike, as to_jsonb
// renders it in UTC with the postgres interval style and exact floats.
func TestCaptureRendersRowsAlikeWhateverTheSession(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, `CREATE TABLE public.readings (id int, at timestamptz, took interval, v float8, PRIMARY KEY (id, at))`)
	install(t, db, tableRef("readings"))
	const row = `(1, '2024-05-01 10:00:00+00', '1 day 02:03:04.5', 0.1::float8 + 0.2::float8)`
	for _, session := range []string{
		"SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3",
		"SET LOCAL TimeZone = 'Asia/Tokyo'; SET LOCAL IntervalStyle = 'sql_standard'; SET LOCAL extra_float_digits = -5",
	} {
		db.Exec(t, "BEGIN; "+session+"; INSERT INTO readings VALUES "+row+"; COMMIT")
		db.Exec(t, "BEGIN; "+session+"; DELETE FROM readings; COMMIT")
	}
	got := drainQueue(t, db)
	require.Len(t, got, 4)
	want := map[string]any{"id": num(1), "at": "2024-05-01T10:00:00+00:00", "took": "1 day 02:03:04.5", "v": 0.30000000000000004}
	for i, c := range got {
		vals := c.New
		if c.Op == "delete" {
			vals = c.Old
		}
		require.Equal(t, want, vals, "change %d (%s)", i, c.Op)
		require.Equal(t, map[string]any{"id": num(1), "at": "2024-05-01T10:00:00+00:00"}, c.Keys, "change %d", i)
	}
	// The trigger's settings are the ones the engine and the WAL stream use.
	var config []string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT proconfig FROM pg_proc WHERE oid = 'tandem.capture()'::regprocedure`).Scan(&config))
	require.Subset(t, config, []string{"TimeZone=" + capture.RenderTimeZone, "IntervalStyle=" + capture.RenderIntervalStyle,
		"extra_float_digits=" + capture.RenderFloatDigits})
}
