package wal_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
	"github.com/tandem-sync/tandem/internal/wal"
)

// Benchmarks run with -benchtime=1x (make bench): each does its own rounds
// and reports medians. Variables: BENCH_ROUNDS (default 3), BENCH_SECONDS
// (per pgbench run, default 5), BENCH_ROWS (rows the stream benchmark
// updates, default 100000), BENCH_TX_ROWS (single-row updates per
// transaction, default 1000).

// touchFn makes single-row updates in one transaction, one statement each.
const touchFn = `CREATE FUNCTION bench_touch(lo bigint, hi bigint, tag text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN lo..hi LOOP
		UPDATE items SET name = tag || i WHERE id = i;
	END LOOP;
END $$`

// BenchmarkStream: BENCH_ROWS single-row UPDATEs in transactions of
// BENCH_TX_ROWS are written while nothing reads the slot; then the time
// until they are all in change_log (tandem) against the time until
// PostgreSQL's own subscription, between the same two databases, has
// applied them all (its slot confirms past them), in the same round.
func BenchmarkStream(b *testing.B) {
	// The launcher starts a subscription's worker at most once per
	// wal_retrieve_retry_interval (5 s): rounds follow each other faster.
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_retrieve_retry_interval": "10ms"}})
	require.NoError(b, err)
	defer c.Stop()
	ctx := context.Background()
	rows, txRows := pgtest.EnvInt("BENCH_ROWS", 100000), pgtest.EnvInt("BENCH_TX_ROWS", 1000)
	for range b.N {
		var tandemRates, nativeRates, ratios []float64
		for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
			node, ctl, replica := benchDB(b, c), benchDB(b, c), benchDB(b, c)
			for _, db := range []*pgxpool.Pool{node, replica} {
				_, err := db.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, name text, score int);
					ALTER TABLE items REPLICA IDENTITY FULL`)
				require.NoError(b, err)
				_, err = db.Exec(ctx, `INSERT INTO items SELECT g, 'seed', g FROM generate_series(1, $1::int) g`, rows)
				require.NoError(b, err)
			}
			_, err := node.Exec(ctx, touchFn+`; CREATE PUBLICATION tandem FOR TABLE items; CREATE PUBLICATION native FOR TABLE items`)
			require.NoError(b, err)
			_, err = control.Migrate(ctx, ctl)
			require.NoError(b, err)
			id, err := control.InstanceID(ctx, ctl)
			require.NoError(b, err)
			slot, nativeSlot := capture.SlotName(id, "bench"), pgtest.UniqueName("native")
			_, err = node.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput'), pg_create_logical_replication_slot($2, 'pgoutput')`, slot, nativeSlot)
			require.NoError(b, err)
			// The subscription exists but waits, as the reader does.
			_, err = replica.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION native
				WITH (create_slot = false, slot_name = '%s', enabled = false, copy_data = false)`,
				nativeSlot, c.URL(dbName(node)), nativeSlot))
			require.NoError(b, err)

			for lo := 1; lo <= rows; lo += txRows {
				_, err := node.Exec(ctx, `SELECT bench_touch($1, $2, 'r')`, lo, min(lo+txRows-1, rows))
				require.NoError(b, err)
			}
			var target pglogrepl.LSN
			require.NoError(b, node.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()`).Scan(&target))

			rd := &wal.Reader{Node: "bench", NodeDB: node, Control: ctl, Slot: slot}
			start := time.Now()
			res, err := rd.Pull(ctx)
			tandemTime := time.Since(start)
			require.NoError(b, err)
			require.EqualValues(b, rows, res.Rows)
			rd.Close()

			start = time.Now()
			_, err = replica.Exec(ctx, fmt.Sprintf(`ALTER SUBSCRIPTION %s ENABLE`, nativeSlot))
			require.NoError(b, err)
			// Polled every millisecond: the subscription says nothing when it is done.
			poll := time.NewTicker(time.Millisecond)
			for done := false; !done; {
				require.NoError(b, node.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`,
					nativeSlot, target.String()).Scan(&done))
				require.Less(b, time.Since(start), 10*time.Minute, "the subscription never caught up")
				if !done {
					<-poll.C
				}
			}
			poll.Stop()
			nativeTime := time.Since(start)
			var applied int
			require.NoError(b, replica.QueryRow(ctx, `SELECT count(*) FROM items WHERE name LIKE 'r%'`).Scan(&applied))
			require.Equal(b, rows, applied, "the subscription applied every update")
			_, err = replica.Exec(ctx, fmt.Sprintf(`ALTER SUBSCRIPTION %[1]s DISABLE; ALTER SUBSCRIPTION %[1]s SET (slot_name = NONE); DROP SUBSCRIPTION %[1]s`, nativeSlot))
			require.NoError(b, err)
			require.NoError(b, dropSlots(c, node, slot, nativeSlot))

			tr, nr := float64(rows)/tandemTime.Seconds(), float64(rows)/nativeTime.Seconds()
			tandemRates, nativeRates, ratios = append(tandemRates, tr), append(nativeRates, nr), append(ratios, tr/nr)
			b.Logf("round %d: tandem %v (%.0f changes/s), subscription %v (%.0f rows/s), ratio %.2f",
				round+1, tandemTime.Round(time.Millisecond), tr, nativeTime.Round(time.Millisecond), nr, tr/nr)
		}
		b.ReportMetric(pgtest.Median(tandemRates), "tandem_changes/s")
		b.ReportMetric(pgtest.Median(nativeRates), "subscription_rows/s")
		b.ReportMetric(pgtest.Median(ratios), "tandem/subscription")
	}
}

// BenchmarkWriteOverhead: pgbench single-row UPDATEs, 2 clients, on
// pgbench_accounts in a database whose table is published with an active
// slot that a reader streams into a control database, against the same on
// a cluster with neither; rounds alternate the two. Durable clusters (fsync
// and synchronous_commit on, as a stock server). Target: published >= 90%.
func BenchmarkWriteOverhead(b *testing.B) {
	plainC, err := pgtest.Start(pgtest.Options{Durable: true})
	require.NoError(b, err)
	defer plainC.Stop()
	walC, err := pgtest.Start(pgtest.Options{Durable: true})
	require.NoError(b, err)
	defer walC.Stop()
	ctx := context.Background()
	// The control database on a cluster of its own, as it would be on a
	// server of its own: its commits must not share the node's WAL flushes.
	ctlC, err := pgtest.Start(pgtest.Options{})
	require.NoError(b, err)
	defer ctlC.Stop()
	plain, node, ctl := pgbenchDB(b, plainC), pgbenchDB(b, walC), benchDB(b, ctlC)
	_, err = control.Migrate(ctx, ctl)
	require.NoError(b, err)
	id, err := control.InstanceID(ctx, ctl)
	require.NoError(b, err)
	slot := capture.SlotName(id, "bench")
	_, err = node.Exec(ctx, `CREATE PUBLICATION tandem FOR TABLE pgbench_accounts`)
	require.NoError(b, err)
	_, err = node.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	require.NoError(b, err)
	rd := &wal.Reader{Node: "bench", NodeDB: node, Control: ctl, Slot: slot}
	defer func() { rd.Close(); require.NoError(b, dropSlots(walC, node, slot)) }()
	_, err = rd.Pull(ctx) // streaming from here on
	require.NoError(b, err)

	for range b.N {
		runs := map[string][]float64{}
		for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
			for _, v := range []struct {
				name string
				c    *pgtest.Cluster
				db   *pgxpool.Pool
			}{{"plain", plainC, plain}, {"published", walC, node}} {
				_, err := v.db.Exec(ctx, "CHECKPOINT")
				require.NoError(b, err)
				tps := pgbench(b, v.c, dbName(v.db), pgtest.EnvInt("BENCH_SECONDS", 5))
				runs[v.name] = append(runs[v.name], tps)
				b.Logf("round %d %-10s %8.1f tps", round+1, v.name, tps)
			}
			_, err := rd.Pull(ctx) // the stream kept up: what is left to take
			require.NoError(b, err)
		}
		p, w := pgtest.Median(runs["plain"]), pgtest.Median(runs["published"])
		b.ReportMetric(p, "plain_tps")
		b.ReportMetric(w, "published_tps")
		b.ReportMetric(100*w/p, "published_%_of_plain")
	}
}

func benchDB(b *testing.B, c *pgtest.Cluster) *pgxpool.Pool {
	b.Helper()
	ctx := context.Background()
	name := pgtest.UniqueName("bench")
	require.NoError(b, c.CreateDB(ctx, name))
	pool, err := pgxpool.New(ctx, c.URL(name))
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	return pool
}

func pgbenchDB(b *testing.B, c *pgtest.Cluster) *pgxpool.Pool {
	b.Helper()
	pool := benchDB(b, c)
	out, err := exec.Command(c.Bin("pgbench"), "-i", "-q", "-s", "10", "-d", c.URL(dbName(pool))).CombinedOutput()
	require.NoError(b, err, "pgbench -i: %s", out)
	_, err = pool.Exec(context.Background(), "VACUUM ANALYZE")
	require.NoError(b, err)
	return pool
}

func dbName(p *pgxpool.Pool) string { return p.Config().ConnConfig.Database }

func pgbench(b *testing.B, c *pgtest.Cluster, db string, seconds int) float64 {
	b.Helper()
	return c.Pgbench(b, db, `\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
`, 2, seconds)
}

// dropSlots drops slots of a node once their walsenders are gone.
func dropSlots(c *pgtest.Cluster, pool *pgxpool.Pool, slots ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return (&pgtest.DB{URL: c.URL(dbName(pool))}).DropSlots(ctx, slots...)
}
