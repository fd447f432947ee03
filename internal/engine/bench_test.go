//go:build linux

package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// Engine benchmarks: the contacts sync between two nodes (crm -> hubspot,
// the mapping of the tests) on a cluster of their own (fsync off), run with
// -benchtime=1x (make bench). Each does its own rounds and reports medians.
// Linux only: they read /proc for CPU and memory figures.
//
// Variables: BENCH_ROUNDS (default 3), BENCH_ROWS (rows of the catch-up,
// bulk and memory benchmarks, default 100000), BENCH_TX_ROWS (single-row
// updates per transaction, default 1000), BENCH_BACKLOG (changes pending
// in the memory benchmark, default 1000000), BENCH_LATENCY_ROWS (default
// 10000), BENCH_LATENCY_UPDATES (per round, default 200), BENCH_WINDOW
// (engine window, default engine.DefaultWindow), BENCH_PGSS=1 (log the
// statements that took the server's time in each timed phase, from
// pg_stat_statements).
//
// Timed phases run under the pprof label phase=timed (the initial sync of
// the rows under phase=seed): with -cpuprofile, `go tool pprof
// -tagfocus=phase=timed` leaves setup out.

// percentile is the nearest-rank percentile p (0-100) of xs.
func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

const syncID = "contacts"

// touchFn makes single-row updates in one transaction: each UPDATE is a
// statement of its own, so capture fires once per row.
const touchFn = `CREATE FUNCTION bench_touch(lo bigint, hi bigint, tag text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN lo..hi LOOP
		UPDATE contacts SET phone = tag || i WHERE id = i;
	END LOOP;
END $$`

// benchRig is a cluster of its own with a control database, the crm and
// hubspot nodes with capture installed, and an engine.
type benchRig struct {
	c             *pgtest.Cluster
	ctl, crm, hub *pgxpool.Pool
	urls          map[string]string // CTL, CRM, HUB
	dbs           map[string]string // database name -> control, crm, hubspot
	perDatabase   bool              // BENCH_DBCPU=1: log each timed phase's PostgreSQL CPU per database
	eng           *engine.Engine
	pgss          bool
	walCRM        bool
	cfg           *config.Config
}

// installCRMWAL sets crm up for capture: wal: from here on its writes are
// streamed.
func (r *benchRig) installCRMWAL(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	id, err := control.InstanceID(ctx, r.ctl)
	require.NoError(b, err)
	conn, err := pgx.Connect(ctx, r.urls["CRM"])
	require.NoError(b, err)
	defer conn.Close(ctx)
	_, err = capture.InstallWAL(ctx, conn, "crm", r.cfg.TablesOnNode("crm"), "tandem.yaml", capture.SlotName(id, "crm"))
	require.NoError(b, err)
	b.Cleanup(r.eng.Close) // before the cluster stops
}

func newBenchRig(b *testing.B) *benchRig { return newBenchRigWith(b, false) }

// newBenchRigWith, walCRM: crm is captured from its WAL (capture: wal);
// its slot is created by seed, after the rows that are in step already.
func newBenchRigWith(b *testing.B, walCRM bool) *benchRig {
	b.Helper()
	ctx := context.Background()
	r := &benchRig{urls: map[string]string{}, dbs: map[string]string{}, pgss: os.Getenv("BENCH_PGSS") == "1",
		perDatabase: os.Getenv("BENCH_DBCPU") == "1", walCRM: walCRM}
	opts := pgtest.Options{}
	if r.pgss {
		opts.Settings = map[string]string{"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
	}
	c, err := pgtest.Start(opts)
	require.NoError(b, err)
	r.c = c
	b.Cleanup(c.Stop)
	pools := map[string]*pgxpool.Pool{}
	for name, role := range map[string]string{"CTL": "control", "CRM": "crm", "HUB": "hubspot"} {
		db := pgtest.UniqueName("bench_" + role)
		r.dbs[db] = role
		require.NoError(b, c.CreateDB(ctx, db))
		r.urls[name] = c.URL(db)
		pools[name] = enginePool(b, r.urls[name]) // the nodes' are the engine's too
	}
	r.ctl, r.crm, r.hub = pools["CTL"], pools["CRM"], pools["HUB"]
	r.exec(b, r.crm, crmDDL)
	r.exec(b, r.crm, touchFn)
	r.exec(b, r.hub, hubspotDDL)
	if r.pgss {
		r.exec(b, r.ctl, "CREATE EXTENSION pg_stat_statements")
	}
	yaml := contactsYAML("")
	if walCRM {
		yaml = strings.Replace(yaml, `crm: { dsn: "${CRM}" }`, `crm: { dsn: "${CRM}", capture: wal }`, 1)
		r.exec(b, r.crm, "ALTER TABLE contacts REPLICA IDENTITY FULL")
	}
	cfg, err := config.Parse("tandem.yaml", []byte(yaml), func(k string) (string, bool) { v, ok := r.urls[k]; return v, ok })
	require.NoError(b, err)
	r.cfg = cfg
	_, err = control.Migrate(ctx, r.ctl)
	require.NoError(b, err)
	for node, url := range map[string]string{"crm": r.urls["CRM"], "hubspot": r.urls["HUB"]} {
		if walCRM && node == "crm" {
			continue
		}
		conn, err := pgx.Connect(ctx, url)
		require.NoError(b, err)
		_, err = capture.Install(ctx, conn, node, cfg.TablesOnNode(node), "tandem.yaml")
		require.NoError(b, err)
		require.NoError(b, conn.Close(ctx))
	}
	r.eng = &engine.Engine{Config: cfg, Control: r.ctl, Nodes: map[string]*pgxpool.Pool{"crm": r.crm, "hubspot": r.hub},
		Logger: benchLogger(), Window: pgtest.EnvInt("BENCH_WINDOW", engine.DefaultWindow)}
	return r
}

func benchLogger() *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (r *benchRig) exec(b testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	b.Helper()
	_, err := pool.Exec(context.Background(), sql, args...)
	require.NoError(b, err, sql)
}

func (r *benchRig) count(b testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	b.Helper()
	var n int
	require.NoError(b, pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// sync runs the sync until a run finds nothing to do (the echoes of the
// last window's apply come back in the run after it).
func (r *benchRig) sync(b testing.TB) engine.Result {
	b.Helper()
	var total engine.Result
	for range 100 {
		res, err := r.eng.RunSync(context.Background(), syncID, "manual")
		require.NoError(b, err)
		if res.Idle {
			return total
		}
		total.Created += res.Created
		total.Updated += res.Updated
		total.Deleted += res.Deleted
		total.Conflicts += res.Conflicts
		total.Errors += res.Errors
	}
	require.FailNow(b, "the sync never went idle")
	return total
}

// seed makes n synced contacts: crm row i is ('Person i', 'pi@x.com', i),
// hubspot row i its mapping, linked. By default the rows are written on
// both nodes with capture off and the links in control directly (the
// engine's initial sync of 100,000 rows takes minutes: see BENCH_SEED);
// BENCH_SEED=engine inserts on crm and has the engine create them.
func (r *benchRig) seed(b *testing.B, n int) {
	b.Helper()
	insert := `INSERT INTO contacts (full_name, email, phone)
		SELECT 'Person ' || i, 'p' || i || '@x.com', i::text FROM generate_series(1, $1::int) i`
	if os.Getenv("BENCH_SEED") == "engine" {
		if r.walCRM {
			r.installCRMWAL(b)
		}
		r.exec(b, r.crm, insert, n)
		var res engine.Result
		c := r.timed(b, "seed", func(context.Context) { res = r.sync(b) })
		require.Equal(b, n, res.Created)
		require.Zero(b, res.Conflicts+res.Errors)
		b.Logf("seed by the engine: %d rows created on hubspot: %s; %.0f rows/s, echoes included", n, c, float64(n)/c.wall.Seconds())
	} else {
		uncaptured := func(pool *pgxpool.Pool, sql string) {
			require.NoError(b, pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
				// replica: ordinary triggers, capture's among them, do not fire
				if _, err := tx.Exec(context.Background(), "SET LOCAL session_replication_role = replica"); err != nil {
					return err
				}
				_, err := tx.Exec(context.Background(), sql, n)
				return err
			}))
		}
		uncaptured(r.crm, insert)
		uncaptured(r.hub, `INSERT INTO hs_contacts (id, firstname, lastname, email, phone_number)
			SELECT i, 'Person', i::text, 'p' || i || '@x.com', i::text FROM generate_series(1, $1::int) i`)
		r.exec(b, r.hub, "SELECT setval('hs_contacts_id_seq', $1)", n)
		r.exec(b, r.ctl, `INSERT INTO tandem.links (sync_id, source_key, target_key)
			SELECT $1, jsonb_build_object('id', i), jsonb_build_object('id', i) FROM generate_series(1, $2::int) i`, syncID, n)
		// A sync that has run before: no initial sync.
		r.exec(b, r.ctl, `INSERT INTO tandem.sync_state (sync_id) VALUES ($1)`, syncID)
		if r.walCRM {
			r.installCRMWAL(b)
		}
	}
	res, err := r.eng.RunSync(context.Background(), syncID, "manual")
	require.NoError(b, err)
	require.True(b, res.Idle, "the seeded rows are not in step: %+v", res)
	r.requireConverged(b, n, "")
}

// settle leaves the cluster as a quiet server would be before a burst:
// statistics current, no dead tuples pending, no checkpoint due.
func (r *benchRig) settle(b *testing.B) {
	b.Helper()
	for _, p := range []*pgxpool.Pool{r.crm, r.hub, r.ctl} {
		r.exec(b, p, "VACUUM ANALYZE")
	}
	r.exec(b, r.ctl, "CHECKPOINT")
}

// lastQueued is the crm id of the last change waiting in crm's queue: once
// hubspot shows it, every window before it has been applied.
func (r *benchRig) lastQueued(b *testing.B) int64 {
	b.Helper()
	var id int64
	require.NoError(b, r.crm.QueryRow(context.Background(),
		`SELECT (keys->>'id')::bigint FROM tandem.change_queue ORDER BY id DESC LIMIT 1`).Scan(&id))
	return id
}

// requireConverged fails unless every hubspot row is its crm row through
// the mapping, and every crm phone has the tag.
func (r *benchRig) requireConverged(b *testing.B, n int, tag string) {
	b.Helper()
	require.Equal(b, n, r.count(b, r.hub, `SELECT count(*) FROM hs_contacts WHERE starts_with(phone_number, $1)`, tag),
		"hubspot rows with the new phone")
	r.requireSame(b)
}

// requireSame fails unless crm and hubspot hold the same contacts.
func (r *benchRig) requireSame(b *testing.B) {
	b.Helper()
	var crm, hub string
	ctx := context.Background()
	require.NoError(b, r.crm.QueryRow(ctx, `SELECT md5(string_agg(lower(email) || '|' || full_name || '|' || coalesce(phone, ''), ',' ORDER BY lower(email)))
		FROM contacts`).Scan(&crm))
	require.NoError(b, r.hub.QueryRow(ctx, `SELECT md5(string_agg(email || '|' || concat_ws(' ', nullif(firstname, ''), nullif(lastname, '')) || '|' || coalesce(phone_number, ''), ',' ORDER BY email))
		FROM hs_contacts`).Scan(&hub))
	require.Equal(b, crm, hub, "crm and hubspot differ")
}

// cost is what a timed phase took: wall time, CPU of this process (the
// engine; the benchmark's own polling is a small part) and of the
// cluster's server processes.
type cost struct{ wall, goCPU, pgCPU time.Duration }

func (c cost) String() string {
	return fmt.Sprintf("wall %s, engine process CPU %s (%.0f%%), PostgreSQL CPU %s (%.0f%%)",
		c.wall.Round(time.Millisecond), c.goCPU.Round(time.Millisecond), 100*c.goCPU.Seconds()/c.wall.Seconds(),
		c.pgCPU.Round(time.Millisecond), 100*c.pgCPU.Seconds()/c.wall.Seconds())
}

// timed runs f under the pprof label phase and returns its cost.
func (r *benchRig) timed(b *testing.B, phase string, f func(ctx context.Context)) cost {
	b.Helper()
	if r.pgss {
		r.exec(b, r.ctl, "SELECT pg_stat_statements_reset()")
	}
	start, goStart, pgStart, dbStart := time.Now(), processCPU(), r.serverCPU(), r.databaseCPU()
	pprof.Do(context.Background(), pprof.Labels("phase", phase), f)
	c := cost{wall: time.Since(start), goCPU: processCPU() - goStart, pgCPU: r.serverCPU() - pgStart}
	if r.perDatabase {
		for db, t := range r.databaseCPU() {
			if d := t - dbStart[db]; d >= 10*time.Millisecond {
				b.Logf("  PostgreSQL CPU %-8s %s", db, d.Round(10*time.Millisecond))
			}
		}
	}
	if r.pgss {
		r.logStatements(b)
	}
	return c
}

// logStatements logs the statements that took the most server time.
func (r *benchRig) logStatements(b *testing.B) {
	rows, err := r.ctl.Query(context.Background(), `SELECT d.datname, s.calls, round(s.total_exec_time)::bigint, s.rows,
		left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		ORDER BY s.total_exec_time DESC LIMIT 15`)
	require.NoError(b, err)
	for rows.Next() {
		var db, q string
		var calls, ms, n int64
		require.NoError(b, rows.Scan(&db, &calls, &ms, &n, &q))
		b.Logf("  %-8s %7d calls %7d ms %8d rows  %s", r.dbs[db], calls, ms, n, q)
	}
	require.NoError(b, rows.Err())
}

// databaseCPU is the CPU time so far of the cluster's live server
// processes, summed by what they serve: control, crm, hubspot (their
// connections, as the process title names the database) or the server's
// own processes (postmaster, autovacuum, checkpointer, ...).
func (r *benchRig) databaseCPU() map[string]time.Duration {
	out := map[string]time.Duration{}
	if !r.perDatabase {
		return out
	}
	r.eachServerProcess(func(pid string, _ bool, stat []string) {
		title, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline")) // "postgres: user database host(port) state"
		t := strings.Fields(strings.ReplaceAll(string(title), "\x00", " "))
		what := "server"
		if len(t) > 2 && r.dbs[t[2]] != "" {
			what = r.dbs[t[2]]
		}
		out[what] += cpuTicks(stat[11:13]) // utime, stime
	})
	return out
}

// eachServerProcess calls fn with the pid and the /proc stat fields after
// "(comm)" (state ppid ... utime(12th) stime cutime cstime) of the
// cluster's postmaster and of each of its children.
func (r *benchRig) eachServerProcess(fn func(pid string, postmaster bool, stat []string)) {
	pidFile, err := os.ReadFile(filepath.Join(r.c.Dir, "postmaster.pid"))
	if err != nil {
		return
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 15 || (e.Name() != postmaster && f[1] != postmaster) {
			continue
		}
		fn(e.Name(), e.Name() == postmaster, f)
	}
}

// cpuTicks sums /proc stat tick counts as a duration (USER_HZ is 100 on Linux).
func cpuTicks(fields []string) time.Duration {
	var ticks int64
	for _, v := range fields {
		t, _ := strconv.ParseInt(v, 10, 64)
		ticks += t
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time of the cluster's postmaster and its children,
// those still running and those it has reaped.
func (r *benchRig) serverCPU() time.Duration {
	var cpu time.Duration
	r.eachServerProcess(func(_ string, postmaster bool, stat []string) {
		if postmaster {
			cpu += cpuTicks(stat[11:15]) // and its reaped children's: cutime, cstime
		} else {
			cpu += cpuTicks(stat[11:13])
		}
	})
	return cpu
}

// BenchmarkLatency: the daemon running, single-row UPDATEs on crm (10,000
// synced rows), one at a time: each commits (synchronous_commit on), then
// hubspot is polled (every ~170µs) until the new value shows. Reports the
// p50 and p99 of commit-acknowledged-to-visible, medians over rounds, with
// the notifier's default debounce (5ms) and with 1ms. Targets: p50 < 10ms,
// p99 < 50ms. run_only: the same changes, each synced by calling RunSync
// with no daemon, timing the run.
func BenchmarkLatency(b *testing.B) { benchLatency(b, false) }

// BenchmarkLatencyWAL: BenchmarkLatency with crm captured from its WAL
// (capture: wal): the writer commits on the wal node, synchronous_commit on
// (a walsender ships only flushed WAL). The daemon wakes on the stream, so
// the debounce variants differ only for hubspot's side.
func BenchmarkLatencyWAL(b *testing.B) { benchLatency(b, true) }

func benchLatency(b *testing.B, walCRM bool) {
	rows := pgtest.EnvInt("BENCH_LATENCY_ROWS", 10000)
	r := newBenchRigWith(b, walCRM)
	r.seed(b, rows)
	wcfg, err := pgxpool.ParseConfig(r.urls["CRM"])
	require.NoError(b, err)
	wcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	writer, err := pgxpool.NewWithConfig(context.Background(), wcfg)
	require.NoError(b, err)
	defer writer.Close()
	seq := 0
	for _, v := range []struct {
		name     string
		debounce time.Duration // 0: the notifier's default (5ms)
	}{{"debounce=5ms", 0}, {"debounce=1ms", time.Millisecond}} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				stop := r.startDaemon(b, v.debounce)
				r.latencies(b, writer, rows, 10, &seq) // warm up: the daemon's first run, caches
				var p50s, p99s []float64
				for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
					lat := r.latencies(b, writer, rows, pgtest.EnvInt("BENCH_LATENCY_UPDATES", 200), &seq)
					p50s, p99s = append(p50s, percentile(lat, 50)), append(p99s, percentile(lat, 99))
					b.Logf("round %d: %d updates: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
						round+1, len(lat), percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), percentile(lat, 100))
				}
				stop()
				b.ReportMetric(pgtest.Median(p50s), "p50_ms")
				b.ReportMetric(pgtest.Median(p99s), "p99_ms")
			}
		})
	}
	if walCRM {
		// PostgreSQL's own one-way logical replication of the same table,
		// between the same two servers, on the same updates.
		b.Run("subscription", func(b *testing.B) {
			for range b.N {
				var p50s, p99s []float64
				poll, _ := r.subscribe(b)
				for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
					lat := latencies(b, writer, poll, rows, pgtest.EnvInt("BENCH_LATENCY_UPDATES", 200), &seq,
						"SELECT phone FROM contacts WHERE id = $1")
					p50s, p99s = append(p50s, percentile(lat, 50)), append(p99s, percentile(lat, 99))
					b.Logf("round %d: %d updates: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
						round+1, len(lat), percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), percentile(lat, 100))
				}
				b.ReportMetric(pgtest.Median(p50s), "p50_ms")
				b.ReportMetric(pgtest.Median(p99s), "p99_ms")
			}
		})
	}
	// The floor under those: one RunSync for one change, no NOTIFY and no
	// debounce; then the run that takes the apply's echo back, which the
	// daemon also makes after every change.
	b.Run("run_only", func(b *testing.B) {
		for range b.N {
			var p50s, p99s, echo50s []float64
			for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
				runs, echoes := r.runLatencies(b, writer, rows, pgtest.EnvInt("BENCH_LATENCY_UPDATES", 200), &seq)
				p50s, p99s, echo50s = append(p50s, percentile(runs, 50)), append(p99s, percentile(runs, 99)), append(echo50s, percentile(echoes, 50))
				b.Logf("round %d: run of one change: p50 %.2f ms, p99 %.2f ms; run of its echo: p50 %.2f ms, p99 %.2f ms",
					round+1, percentile(runs, 50), percentile(runs, 99), percentile(echoes, 50), percentile(echoes, 99))
			}
			b.ReportMetric(pgtest.Median(p50s), "p50_ms")
			b.ReportMetric(pgtest.Median(p99s), "p99_ms")
			b.ReportMetric(pgtest.Median(echo50s), "echo_p50_ms")
		}
	})
}

// runLatencies makes n single-row updates on crm one at a time, each
// followed by a RunSync, then one more for the echo, and returns both
// runs' durations in ms.
func (r *benchRig) runLatencies(b *testing.B, writer *pgxpool.Pool, rows, n int, seq *int) (runs, echoes []float64) {
	b.Helper()
	ctx := context.Background()
	for range n {
		*seq++
		id := rand.IntN(rows) + 1
		val := fmt.Sprintf("lat-%d", *seq)
		_, err := writer.Exec(ctx, "UPDATE contacts SET phone = $1 WHERE id = $2", val, id)
		require.NoError(b, err)
		for i, out := range []*[]float64{&runs, &echoes} {
			start := time.Now()
			res, err := r.eng.RunSync(ctx, syncID, "manual")
			*out = append(*out, float64(time.Since(start).Microseconds())/1000)
			require.NoError(b, err)
			require.Equal(b, i == 1, res.Idle, "run %d after an update: %+v", i+1, res)
		}
	}
	return runs, echoes
}

// startDaemon runs a daemon over the rig's engine until stop is called.
func (r *benchRig) startDaemon(b *testing.B, debounce time.Duration) (stop func()) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel) // should the benchmark fail before stop
	ready := make(chan struct{})
	done := make(chan error, 1)
	d := &engine.Daemon{Engine: r.eng, Debounce: debounce, Ready: func() { close(ready) }}
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		require.FailNow(b, "daemon stopped before it was ready", "%v", err)
	case <-time.After(time.Minute):
		cancel()
		require.FailNow(b, "daemon not ready within a minute")
	}
	return func() {
		cancel()
		require.NoError(b, <-done)
	}
}

// latencies makes n single-row updates on crm one at a time and returns,
// in ms, how long after each commit hubspot showed the new value.
func (r *benchRig) latencies(b *testing.B, writer *pgxpool.Pool, rows, n int, seq *int) []float64 {
	b.Helper()
	ctx := context.Background()
	poll, err := pgx.Connect(ctx, r.urls["HUB"])
	require.NoError(b, err)
	defer poll.Close(ctx)
	return latencies(b, writer, poll, rows, n, seq, "SELECT phone_number FROM hs_contacts WHERE email = 'p' || $1::bigint || '@x.com'")
}

// subscribe makes a database on the rig's cluster with a copy of crm's
// contacts that PostgreSQL's own logical replication keeps in step, and
// returns a connection to it and the subscription's name.
func (r *benchRig) subscribe(b *testing.B) (*pgx.Conn, string) {
	b.Helper()
	ctx := context.Background()
	db := pgtest.UniqueName("bench_native")
	require.NoError(b, r.c.CreateDB(ctx, db))
	conn, err := pgx.Connect(ctx, r.c.URL(db))
	require.NoError(b, err)
	b.Cleanup(func() { conn.Close(ctx) })
	_, err = conn.Exec(ctx, crmDDL)
	require.NoError(b, err)
	// The copy starts equal (rows copied by hand, not by the subscription).
	rows, err := r.crm.Query(ctx, "SELECT id, full_name, email, phone FROM contacts")
	require.NoError(b, err)
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]any, error) { return row.Values() })
	require.NoError(b, err)
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"contacts"}, []string{"id", "full_name", "email", "phone"}, pgx.CopyFromRows(all))
	require.NoError(b, err)
	slot := pgtest.UniqueName("native")
	r.exec(b, r.crm, "CREATE PUBLICATION native FOR TABLE contacts")
	r.exec(b, r.crm, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION native
		WITH (create_slot = false, slot_name = '%s', copy_data = false)`, slot, r.urls["CRM"], slot))
	require.NoError(b, err)
	b.Cleanup(func() {
		_, _ = conn.Exec(ctx, fmt.Sprintf(`ALTER SUBSCRIPTION %[1]s DISABLE; ALTER SUBSCRIPTION %[1]s SET (slot_name = NONE); DROP SUBSCRIPTION %[1]s`, slot))
	})
	return conn, slot
}

// latencies makes n single-row updates of contacts' phone through writer,
// one at a time, and after each commit polls query ($1: the row's id)
// until it returns the new value; it returns commit-to-visible times in ms.
func latencies(b *testing.B, writer *pgxpool.Pool, poll *pgx.Conn, rows, n int, seq *int, query string) []float64 {
	b.Helper()
	ctx := context.Background()
	pause := syscall.NsecToTimespec(int64(100 * time.Microsecond)) // between polls for the new value; the runtime timer would round this up to ~1ms
	out := make([]float64, 0, n)
	for range n {
		*seq++
		id := rand.IntN(rows) + 1
		val := fmt.Sprintf("lat-%d", *seq)
		_, err := writer.Exec(ctx, "UPDATE contacts SET phone = $1 WHERE id = $2", val, id)
		require.NoError(b, err)
		committed := time.Now()
		for {
			var got *string
			require.NoError(b, poll.QueryRow(ctx, query, id).Scan(&got))
			if got != nil && *got == val {
				break
			}
			if time.Since(committed) > time.Minute {
				require.FailNow(b, "update never became visible", "crm id %d, %q", id, val)
			}
			_ = syscall.Nanosleep(&pause, nil)
		}
		out = append(out, float64(time.Since(committed).Microseconds())/1000)
	}
	return out
}

// load makes one round's changes on crm, every row's phone set to tag || id.
type load func(b *testing.B, r *benchRig, rows int, tag string)

// singleRowUpdates: BENCH_TX_ROWS (1,000) single-row updates per transaction.
func singleRowUpdates(b *testing.B, r *benchRig, rows int, tag string) {
	per := pgtest.EnvInt("BENCH_TX_ROWS", 1000)
	for lo := 1; lo <= rows; lo += per {
		r.exec(b, r.crm, "SELECT bench_touch($1, $2, $3)", lo, min(lo+per-1, rows), tag)
	}
}

// bulkUpdate: one UPDATE of every row.
func bulkUpdate(b *testing.B, r *benchRig, rows int, tag string) {
	r.exec(b, r.crm, "UPDATE contacts SET phone = $1 || id", tag)
}

// BenchmarkCatchUp: the daemon was stopped while crm made 100,000
// single-row updates in 100 transactions on 100,000 synced rows; rows/s
// until hubspot has them all (rows/s_idle: until the run has also taken
// its own echoes back and stops). Target: >= 50,000 rows/s.
func BenchmarkCatchUp(b *testing.B) { benchCatchUp(b, singleRowUpdates, false) }

// BenchmarkBulkUpdate: as BenchmarkCatchUp, the changes being one UPDATE
// of 100,000 rows. Target: >= 100,000 rows/s.
func BenchmarkBulkUpdate(b *testing.B) { benchCatchUp(b, bulkUpdate, false) }

// BenchmarkCatchUpBothSides: BenchmarkCatchUp while an application writes
// hubspot (one connection, single-row UPDATEs of lastname on random rows,
// as fast as it goes) until crm's changes are all on hubspot. Reports the
// crm -> hubspot rows/s and the application's writes/s; at the end both
// sides must hold the same contacts.
func BenchmarkCatchUpBothSides(b *testing.B) { benchCatchUp(b, singleRowUpdates, true) }

func benchCatchUp(b *testing.B, mk load, hubWrites bool) {
	rows := pgtest.EnvInt("BENCH_ROWS", 100000)
	for range b.N {
		r := newBenchRig(b)
		r.seed(b, rows)
		var visible, idle, writes []float64
		for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
			tag := fmt.Sprintf("r%d-", round+1)
			start := time.Now()
			mk(b, r, rows, tag)
			made := time.Since(start)
			r.settle(b)
			c := r.catchUp(b, rows, tag, hubWrites)
			visible = append(visible, float64(rows)/c.visible.Seconds())
			idle = append(idle, float64(rows)/c.cost.wall.Seconds())
			if hubWrites {
				writes = append(writes, float64(c.writes)/c.visible.Seconds())
			}
			r.sync(b) // the application's last writes, the last echoes
			r.requireConverged(b, rows, tag)
			b.Logf("round %d: changes made in %s; on hubspot after %s (%.0f rows/s), idle after %s; %s; %d runs, %d updated, %d conflicts, %d errors; %d application writes",
				round+1, made.Round(time.Millisecond), c.visible.Round(time.Millisecond), visible[round], c.cost.wall.Round(time.Millisecond),
				c.cost, c.runs, c.res.Updated, c.res.Conflicts, c.res.Errors, c.writes)
		}
		b.ReportMetric(pgtest.Median(visible), "rows/s")
		b.ReportMetric(pgtest.Median(idle), "rows/s_idle")
		if hubWrites {
			b.ReportMetric(pgtest.Median(writes), "hub_writes/s")
		}
	}
}

// BenchmarkCatchUpSubscription and BenchmarkBulkUpdateSubscription: the
// changes of BenchmarkCatchUp and BenchmarkBulkUpdate applied by
// PostgreSQL's own one-way logical replication (pgoutput) into a copy of
// crm's contacts on the same cluster: the yardstick, measured on
// the same machine in the same hour as tandem's figures. The subscription
// is disabled while crm makes the changes (capture off: no queue rows in
// the WAL to decode), then enabled; rows/s until the copy shows the last.
func BenchmarkCatchUpSubscription(b *testing.B) { benchSubscription(b, singleRowUpdates) }

func BenchmarkBulkUpdateSubscription(b *testing.B) { benchSubscription(b, bulkUpdate) }

func benchSubscription(b *testing.B, mk load) {
	rows := pgtest.EnvInt("BENCH_ROWS", 100000)
	ctx := context.Background()
	for range b.N {
		r := newBenchRig(b)
		r.seed(b, rows)
		r.exec(b, r.crm, "ALTER TABLE contacts DISABLE TRIGGER USER")
		// The launcher starts workers at most this often (default 5s): not
		// part of the apply.
		r.exec(b, r.ctl, "ALTER SYSTEM SET wal_retrieve_retry_interval = '10ms'")
		r.exec(b, r.ctl, "SELECT pg_reload_conf()")
		copyDB, sub := r.subscribe(b)
		var rates []float64
		for round := range pgtest.EnvInt("BENCH_ROUNDS", 3) {
			tag := fmt.Sprintf("r%d-", round+1)
			_, err := copyDB.Exec(ctx, "ALTER SUBSCRIPTION "+sub+" DISABLE")
			require.NoError(b, err)
			// DISABLE returns before the apply worker and its walsender
			// stop: until they have, they could apply the changes below.
			require.Eventually(b, func() bool {
				return r.count(b, r.crm, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", sub) == 0
			}, time.Minute, 10*time.Millisecond, "the walsender never stopped")
			mk(b, r, rows, tag)
			r.settle(b)
			_, err = copyDB.Exec(ctx, "VACUUM ANALYZE")
			require.NoError(b, err)
			want := tag + strconv.Itoa(rows) // the last row changed; a bulk UPDATE commits at once
			c := r.timed(b, "timed", func(ctx context.Context) {
				_, err := copyDB.Exec(ctx, "ALTER SUBSCRIPTION "+sub+" ENABLE")
				require.NoError(b, err)
				for deadline := time.Now().Add(5 * time.Minute); ; {
					var got *string
					require.NoError(b, copyDB.QueryRow(ctx, "SELECT phone FROM contacts WHERE id = $1", rows).Scan(&got))
					if got != nil && *got == want {
						break
					}
					require.True(b, time.Now().Before(deadline), "the subscription never applied %s", want)
					<-time.After(catchUpPoll)
				}
			})
			var applied int
			require.NoError(b, copyDB.QueryRow(ctx, "SELECT count(*) FROM contacts WHERE phone = $1 || id", tag).Scan(&applied))
			require.Equal(b, rows, applied, "rows the subscription applied")
			rates = append(rates, float64(rows)/c.wall.Seconds())
			b.Logf("round %d: %s; %.0f rows/s", round+1, c, rates[round])
		}
		b.ReportMetric(pgtest.Median(rates), "rows/s")
	}
}

// catchUpPoll is how often a catch-up benchmark looks for the last
// change: ±5ms on runs of seconds. Polling every 1ms took a tenth of a
// core from the run it measured, on a machine of two.
const catchUpPoll = 5 * time.Millisecond

type catchUpResult struct {
	visible time.Duration // until hubspot showed the last change
	cost    cost          // until RunSync returned
	res     engine.Result
	runs    int   // sync_runs rows the phase recorded
	writes  int64 // the application's writes to hubspot meanwhile
}

// catchUp times one RunSync over the changes waiting on crm, polling
// hubspot (every catchUpPoll, one indexed row) for the last of them.
func (r *benchRig) catchUp(b *testing.B, rows int, tag string, hubWrites bool) catchUpResult {
	b.Helper()
	ctx := context.Background()
	last := r.lastQueued(b)
	email, want := fmt.Sprintf("p%d@x.com", last), tag+strconv.FormatInt(last, 10)
	poll, err := pgx.Connect(ctx, r.urls["HUB"])
	require.NoError(b, err)
	defer poll.Close(ctx)
	runsBefore := r.count(b, r.ctl, "SELECT count(*) FROM tandem.sync_runs")

	wctx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	writes := make(chan int64, 1)
	if hubWrites {
		conn, err := pgx.Connect(ctx, r.urls["HUB"])
		require.NoError(b, err)
		go func() { writes <- appWriter(wctx, conn, rows, tag) }()
	} else {
		writes <- 0
	}

	var out catchUpResult
	out.cost = r.timed(b, "timed", func(ctx context.Context) {
		start := time.Now()
		type ran struct {
			res engine.Result
			err error
		}
		done := make(chan ran, 1)
		go func() {
			res, err := r.eng.RunSync(ctx, syncID, "manual")
			done <- ran{res, err}
		}()
		var finished *ran
		for {
			var got *string
			require.NoError(b, poll.QueryRow(ctx, "SELECT phone_number FROM hs_contacts WHERE email = $1", email).Scan(&got))
			if got != nil && *got == want {
				out.visible = time.Since(start)
				break
			}
			if finished != nil {
				require.NoError(b, finished.err)
				require.FailNow(b, "the run ended before hubspot had the last change", "%s = %v", email, got)
			}
			select {
			case f := <-done:
				finished = &f
			case <-time.After(catchUpPoll):
			}
		}
		stopWriter()
		if finished == nil {
			f := <-done
			finished = &f
		}
		require.NoError(b, finished.err)
		out.res = finished.res
	})
	out.writes = <-writes
	out.runs = r.count(b, r.ctl, "SELECT count(*) FROM tandem.sync_runs") - runsBefore
	return out
}

// appWriter updates lastname of random hubspot rows, one row per
// transaction, until ctx ends, and returns how many it wrote. It closes
// conn.
func appWriter(ctx context.Context, conn *pgx.Conn, rows int, tag string) int64 {
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	for ctx.Err() == nil {
		_, err := conn.Exec(ctx, "UPDATE hs_contacts SET lastname = $1 WHERE id = $2", "w"+tag+strconv.FormatInt(n, 10), rand.IntN(rows)+1)
		if err != nil {
			break // cancelled; any other error shows as a sync that does not converge
		}
		n++
	}
	return n
}

// BenchmarkBacklogMemory: 1,000,000 changes pending on crm (10 UPDATEs of
// 100,000 synced rows), then one sync through them while the heap is
// sampled every 10ms. The engine runs in this process: peak_heap_MB is
// the peak HeapInuse, vmhwm_MB the peak RSS of the whole test binary
// during the sync (pgx pools and the benchmark included).
func BenchmarkBacklogMemory(b *testing.B) { benchBacklogMemory(b, false) }

// BenchmarkBacklogMemoryBothSides: as BenchmarkBacklogMemory, half the
// changes on each side: 5 UPDATEs of every row's phone on crm, then 5 of
// every row's lastname on hubspot. Every window's apply puts its marker
// after the other side's backlog. BENCH_SAME_COLUMN=1: hubspot's updates
// write phone_number, the column crm's write, so every row is a conflict
// (settled by latest_wins: hubspot's, made later) and every window has
// the sync's own writes of its columns after it.
func BenchmarkBacklogMemoryBothSides(b *testing.B) { benchBacklogMemory(b, true) }

func benchBacklogMemory(b *testing.B, bothSides bool) {
	rows := pgtest.EnvInt("BENCH_ROWS", 100000)
	updates := max(1, pgtest.EnvInt("BENCH_BACKLOG", 1000000)/rows)
	for range b.N {
		r := newBenchRig(b)
		r.seed(b, rows)
		start := time.Now()
		var tag string
		crmUpdates := updates
		if bothSides {
			crmUpdates = (updates + 1) / 2
		}
		for i := range crmUpdates {
			tag = fmt.Sprintf("m%d-", i+1)
			bulkUpdate(b, r, rows, tag)
		}
		hubColumn := "lastname"
		if pgtest.EnvInt("BENCH_SAME_COLUMN", 0) == 1 {
			hubColumn = "phone_number"
		}
		for i := range updates - crmUpdates {
			r.exec(b, r.hub, fmt.Sprintf("UPDATE hs_contacts SET %s = $1 || id", hubColumn), fmt.Sprintf("h%d-", i+1))
		}
		b.Logf("%d changes made (%d on crm) in %s", updates*rows, crmUpdates*rows, time.Since(start).Round(time.Millisecond))
		r.settle(b)

		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		// Writing 5 to clear_refs resets VmHWM to the current RSS.
		require.NoError(b, os.WriteFile("/proc/self/clear_refs", []byte("5"), 0))
		rssBefore := procStatusMB(b, "VmRSS")
		peak := sampleHeap(10 * time.Millisecond)
		var res engine.Result
		c := r.timed(b, "timed", func(context.Context) { res = r.sync(b) })
		inuse := peak()
		hwm := procStatusMB(b, "VmHWM")
		if hubColumn == "phone_number" {
			// Which side's phone a row keeps depends on the windows its two
			// changes fell in (README, "Resolve"): only the sides' agreement
			// is checked.
			r.requireSame(b)
		} else {
			r.requireConverged(b, rows, tag)
		}
		b.Logf("sync of %d changes: %s; %.0f changes/s; %d updated, %d conflicts, %d errors",
			updates*rows, c, float64(updates*rows)/c.wall.Seconds(), res.Updated, res.Conflicts, res.Errors)
		b.Logf("heap in use %.1f MB before, peak %.1f MB; RSS %.1f MB before, peak (VmHWM) %.1f MB",
			mb(before.HeapInuse), mb(inuse), rssBefore, hwm)
		b.ReportMetric(mb(inuse), "peak_heap_MB")
		b.ReportMetric(hwm, "vmhwm_MB")
		b.ReportMetric(float64(updates*rows)/c.wall.Seconds(), "changes/s")
	}
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// sampleHeap samples the heap every interval until the returned function
// is called, which returns the peak HeapInuse. (Not Sys: it only grows
// over the process's life, which holds the benchmarks run before.)
func sampleHeap(every time.Duration) (stop func() (inuse uint64)) {
	quit, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-quit:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(quit)
		return <-done
	}
}

// procStatusMB reads a kB field of /proc/self/status, in MB.
func procStatusMB(b *testing.B, field string) float64 {
	b.Helper()
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(b, err)
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			require.NoError(b, err)
			return kb / 1024
		}
	}
	require.FailNow(b, "no "+field+" in /proc/self/status")
	return 0
}
