package capture_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// Benchmarks run with -benchtime=1x (make bench): each one does its own
// rounds, alternating the variants it compares so they share the machine's
// noise, and reports medians. Variables: BENCH_SECONDS (per pgbench run,
// default 5), BENCH_ROUNDS (default 3).

const (
	singleRowScript = `\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
`
	bulkScript = `\set start random(1, 100000 * :scale - 10000)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :start AND :start + 9999;
`
)

// benchNode is a pgbench database on a benchmark cluster.
type benchNode struct {
	c    *pgtest.Cluster
	name string
	pool *pgxpool.Pool
}

func newBenchNode(b *testing.B, c *pgtest.Cluster, scale int, captured bool) *benchNode {
	b.Helper()
	ctx := context.Background()
	name := pgtest.UniqueName("bench")
	require.NoError(b, c.CreateDB(ctx, name))
	out, err := exec.Command(c.Bin("pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-d", c.URL(name)).CombinedOutput()
	require.NoError(b, err, "pgbench -i: %s", out)
	pool, err := pgxpool.New(ctx, c.URL(name))
	require.NoError(b, err)
	n := &benchNode{c: c, name: name, pool: pool}
	if captured {
		conn, err := pgx.Connect(ctx, c.URL(name))
		require.NoError(b, err)
		_, err = capture.Install(ctx, conn, "bench", []config.TableRef{{Schema: "public", Name: "pgbench_accounts"}}, "bench")
		require.NoError(b, err)
		conn.Close(ctx)
	}
	_, err = pool.Exec(ctx, "VACUUM ANALYZE")
	require.NoError(b, err)
	return n
}

// pgbench runs a script for the configured seconds and returns its tps.
func (n *benchNode) pgbench(b *testing.B, script string, clients, seconds int) float64 {
	b.Helper()
	return n.c.Pgbench(b, n.name, script, clients, seconds)
}

func (n *benchNode) exec(b *testing.B, sql string) {
	b.Helper()
	_, err := n.pool.Exec(context.Background(), sql)
	require.NoError(b, err)
}

// compareTPS alternates the variants for the configured rounds and returns
// each variant's median tps. Between runs the captured queue is emptied, as
// a running daemon would keep it.
func compareTPS(b *testing.B, script string, clients int, variants map[string]*benchNode, order []string) map[string]float64 {
	rounds, seconds := pgtest.EnvInt("BENCH_ROUNDS", 3), pgtest.EnvInt("BENCH_SECONDS", 5)
	runs := map[string][]float64{}
	for r := range rounds {
		for _, v := range order {
			n := variants[v]
			if v != "plain" {
				n.exec(b, "TRUNCATE tandem.change_queue")
			}
			n.exec(b, "CHECKPOINT")
			tps := n.pgbench(b, script, clients, seconds)
			runs[v] = append(runs[v], tps)
			b.Logf("round %d %-22s %10.1f tps", r+1, v, tps)
		}
	}
	med := map[string]float64{}
	for v, xs := range runs {
		med[v] = pgtest.Median(xs)
	}
	return med
}

// BenchmarkTriggerOverhead: pgbench single-row UPDATEs and 10,000-row UPDATE
// statements, 2 clients, on pgbench_accounts with capture against the same
// table without it, in the same run. Targets: single-row >= 80%, bulk >= 70%.
//
// Two server settings: durable (fsync and synchronous_commit on, as a stock
// server and a plain pgbench run) and cpu_bound (fsync off: no commit flush,
// so the trigger's CPU cost is all that separates the two).
func BenchmarkTriggerOverhead(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts pgtest.Options
	}{{"durable", pgtest.Options{Durable: true}}, {"cpu_bound", pgtest.Options{}}} {
		b.Run(mode.name, func(b *testing.B) { benchTriggerOverhead(b, mode.opts) })
	}
}

func benchTriggerOverhead(b *testing.B, opts pgtest.Options) {
	c, err := pgtest.Start(opts)
	require.NoError(b, err)
	defer c.Stop()
	for range b.N {
		plain, captured := newBenchNode(b, c, 10, false), newBenchNode(b, c, 10, true)
		variants := map[string]*benchNode{"plain": plain, "captured": captured}
		order := []string{"plain", "captured"}

		single := compareTPS(b, singleRowScript, 2, variants, order)
		b.ReportMetric(single["plain"], "single_plain_tps")
		b.ReportMetric(single["captured"], "single_captured_tps")
		b.ReportMetric(100*single["captured"]/single["plain"], "single_%_of_plain")

		bulk := compareTPS(b, bulkScript, 2, variants, order)
		b.ReportMetric(bulk["plain"]*10000, "bulk_plain_rows/s")
		b.ReportMetric(bulk["captured"]*10000, "bulk_captured_rows/s")
		b.ReportMetric(100*bulk["captured"]/bulk["plain"], "bulk_%_of_plain")
	}
}

// naiveNotify is what coalescing replaces: every capturing statement sends
// NOTIFY, so every commit takes the cluster-wide notify lock.
const naiveNotify = `
CREATE FUNCTION public.naive_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('tandem_changes', TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER naive_notify AFTER UPDATE ON pgbench_accounts FOR EACH STATEMENT EXECUTE FUNCTION public.naive_notify();`

// BenchmarkNotifyUnderConcurrentWriters: 12 clients of single-row UPDATEs on
// a durable cluster (fsync on, synchronous_commit on), with a reader that
// LISTENs and drains the queue on every notification (re-arming NOTIFY), as
// the daemon does. Variants: no capture; capture with an equally busy reader
// but NOTIFY disarmed (the cost of capture and reading, no NOTIFY); capture with coalesced NOTIFY;
// and capture plus a NOTIFY on every statement, the pattern that serializes
// commits on the notify lock. coalesced_%_of_no_notify near 100 means NOTIFY
// does not serialize commits.
func BenchmarkNotifyUnderConcurrentWriters(b *testing.B) {
	c, err := pgtest.Start(pgtest.Options{Durable: true})
	require.NoError(b, err)
	defer c.Stop()
	const clients = 12
	for range b.N {
		plain, coalesced, naive := newBenchNode(b, c, 10, false), newBenchNode(b, c, 10, true), newBenchNode(b, c, 10, true)
		silent := newBenchNode(b, c, 10, true) // its reader disarms NOTIFY after every pull
		naive.exec(b, naiveNotify)
		ctx, cancel := context.WithCancel(context.Background())
		notified := make(chan int64, 3)
		for _, n := range []*benchNode{coalesced, naive} {
			go func() { notified <- drainOnNotify(ctx, b, n, false) }()
		}
		go func() { notified <- drainOnNotify(ctx, b, silent, true) }()
		variants := map[string]*benchNode{"plain": plain, "captured_no_notify": silent, "coalesced": coalesced, "notify_every_commit": naive}
		med := compareTPS(b, singleRowScript, clients, variants, []string{"plain", "captured_no_notify", "coalesced", "notify_every_commit"})
		cancel()
		b.Logf("notifications received by the readers: %d, %d and %d", <-notified, <-notified, <-notified)
		b.ReportMetric(med["plain"], "plain_tps")
		b.ReportMetric(med["coalesced"], "coalesced_tps")
		b.ReportMetric(med["notify_every_commit"], "notify_every_commit_tps")
		b.ReportMetric(med["captured_no_notify"], "captured_no_notify_tps")
		b.ReportMetric(100*med["coalesced"]/med["captured_no_notify"], "coalesced_%_of_no_notify")
		b.ReportMetric(100*med["coalesced"]/med["plain"], "coalesced_%_of_plain")
		b.ReportMetric(100*med["notify_every_commit"]/med["plain"], "notify_every_commit_%_of_plain")
	}
}

// drainOnNotify is the daemon's loop in miniature: wait for a notification
// (or 100 ms), pull. It returns the notifications received. silent: pull
// without pause and disarm NOTIFY right after each pull's re-arm, so the
// reader does the same work but no NOTIFY is ever sent.
func drainOnNotify(ctx context.Context, b *testing.B, n *benchNode, silent bool) int64 {
	ctl := n.c.URL(n.name) // the node is its own control database here
	pool, err := pgxpool.New(ctx, ctl)
	if err != nil {
		b.Error(err)
		return 0
	}
	defer pool.Close()
	if _, err := control.Migrate(ctx, pool); err != nil {
		b.Error(err)
		return 0
	}
	id, _ := control.InstanceID(ctx, pool)
	r := &capture.Reader{Node: "bench", NodeDB: pool, Control: pool, Consumer: id}
	conn, err := pgx.Connect(ctx, ctl)
	if err != nil {
		b.Error(err)
		return 0
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN tandem_changes"); err != nil {
		b.Error(err)
		return 0
	}
	var count int64
	for ctx.Err() == nil {
		if !silent {
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			if _, err := conn.WaitForNotification(wctx); err == nil {
				count++
			}
			cancel()
		}
		if _, err := r.Pull(ctx); err != nil && ctx.Err() == nil {
			b.Errorf("pull: %v", err)
			return count
		}
		if silent {
			_, _ = pool.Exec(ctx, "SELECT setval('tandem.notify_seq', 2)")
		}
	}
	return count
}

// BenchmarkQueueToChangeLog: rows/s moved from a node's queue into the
// control database's change_log (separate databases on one cluster), in
// batches of capture.DefaultBatchSize. Target: >= 100,000 rows/s.
func BenchmarkQueueToChangeLog(b *testing.B) {
	c, err := pgtest.Start(pgtest.Options{})
	require.NoError(b, err)
	defer c.Stop()
	ctx := context.Background()
	const rows = 200_000
	for range b.N {
		node := newBenchNode(b, c, 2, true)
		ctlName := pgtest.UniqueName("ctl")
		require.NoError(b, c.CreateDB(ctx, ctlName))
		ctlPool, err := pgxpool.New(ctx, c.URL(ctlName))
		require.NoError(b, err)
		_, err = control.Migrate(ctx, ctlPool)
		require.NoError(b, err)
		id, err := control.InstanceID(ctx, ctlPool)
		require.NoError(b, err)
		r := &capture.Reader{Node: "bench", NodeDB: node.pool, Control: ctlPool, Consumer: id}
		_, err = r.Pull(ctx) // register
		require.NoError(b, err)

		var rates []float64
		for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
			node.exec(b, fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %d", rows/2))
			node.exec(b, fmt.Sprintf("UPDATE pgbench_accounts SET filler = 'round %d' WHERE aid <= %d", round, rows/2))
			start := time.Now()
			res, err := r.Pull(ctx)
			require.NoError(b, err)
			el := time.Since(start)
			require.EqualValues(b, rows, res.Rows)
			rate := float64(res.Rows) / el.Seconds()
			rates = append(rates, rate)
			b.Logf("round %d: %d rows in %s (%d batches, pruned %d): %.0f rows/s", round+1, res.Rows, el.Round(time.Millisecond), res.Batches, res.Pruned, rate)
		}
		b.ReportMetric(pgtest.Median(rates), "rows/s")
		ctlPool.Close()
	}
}
