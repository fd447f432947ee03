package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// BenchmarkInitialSync times the initial sync of BENCH_INITIAL_ROWS
// (default 1,000,000) crm contacts written before capture was installed:
// with hubspot empty (every row created there and linked), and with
// hubspot holding a tenth of them already (paired by email, lowercase,
// 1% of the pairs differing, settled by latest_wins), the rest created;
// hubspot has an index on lower(email), the normalised natural key.
// BENCH_INITIAL_HISTORY (default 0) puts that many earlier changes of each
// table in change_log first, a history latest_wins reads capture times
// from.
func BenchmarkInitialSync(b *testing.B) {
	n := pgtest.EnvInt("BENCH_INITIAL_ROWS", 1_000_000)
	history := pgtest.EnvInt("BENCH_INITIAL_HISTORY", 0)
	for _, tc := range []struct {
		name    string
		overlap int
	}{{"empty_target", 0}, {"tenth_on_both", n / 10}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				r := newBenchRigWith(b, false)
				if tc.overlap > 0 {
					r.eng.Config.Syncs[0].Match = []string{"email"}
					// What the README advises for match on a transformed column:
					// each probe an index lookup.
					r.exec(b, r.hub, `CREATE INDEX ON hs_contacts (lower(email))`)
				}
				// The rows were there before capture: written with triggers off.
				r.exec(b, r.crm, `SET session_replication_role = replica;
					INSERT INTO contacts (full_name, email, phone)
					SELECT 'Person ' || i, 'p' || i || '@x.com', i::text FROM generate_series(1, `+fmt.Sprint(n)+`) i`)
				r.exec(b, r.hub, `SET session_replication_role = replica;
					INSERT INTO hs_contacts (firstname, lastname, email, phone_number)
					SELECT 'Person', i::text, 'p' || i || '@x.com', CASE WHEN i % 100 = 0 THEN 'h' ELSE '' END || i
					FROM generate_series(1, `+fmt.Sprint(tc.overlap)+`) i`)
				r.exec(b, r.ctl, `INSERT INTO tandem.change_log (node, table_name, op, keys, old, new, captured_at)
					SELECT t.node, t.name, 'update', jsonb_build_object('id', 1 + (i * 7919) % $1::bigint),
						'{"phone": "0"}', jsonb_build_object('phone', i::text), now() - interval '1 day' + i * interval '1 ms'
					FROM generate_series(1, $2::bigint) i, (VALUES ('crm', 'public.contacts'), ('hubspot', 'public.hs_contacts')) t(node, name)`,
					n, history)
				r.settle(b)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				peak := sampleHeap(10 * time.Millisecond)
				var chunks int
				r.eng.Progress = func(engine.InitialProgress) { chunks++ }
				c := r.timed(b, "initial", func(ctx context.Context) {
					res, err := r.eng.RunSync(ctx, syncID, "manual")
					require.NoError(b, err)
					require.Equal(b, n-tc.overlap, res.Created, "%+v", res)
					require.Equal(b, tc.overlap/100, res.Conflicts, "%+v", res)
				})
				inuse := peak()
				require.Equal(b, n, r.count(b, r.hub, `SELECT count(*) FROM hs_contacts`))
				require.Equal(b, n, r.count(b, r.ctl, `SELECT count(*) FROM tandem.links`))
				rate := float64(n) / c.wall.Seconds()
				b.Logf("initial sync of %d rows (%d on both sides): %s; %.0f rows/s; %d chunks; heap in use %.1f MB before, peak %.1f MB",
					n, tc.overlap, c, rate, chunks, mb(before.HeapInuse), mb(inuse))
				b.ReportMetric(rate, "rows/s")
				b.ReportMetric(mb(inuse), "peak_heap_MB")
				b.ReportMetric(c.wall.Seconds(), "s")
			}
		})
	}
}
