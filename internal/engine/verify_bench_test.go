//go:build linux

package engine_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// BenchmarkVerify: `tandem verify` of the contacts sync over
// BENCH_VERIFY_ROWS synced rows (default 1,000,000; seeded directly on
// both nodes with their links, not by the engine), the three databases on
// one cluster of this machine. Three cases, each BENCH_ROUNDS times
// (default 3), medians reported:
//
//   - equal_s: the tables are equal (target: under 10 s for 1,000,000 rows);
//     peak_heap_MB is the peak heap in use during it;
//   - differing_s: 10 rows spread over the table differ (a value of each
//     changed on hubspot behind tandem's back): found by their buckets'
//     checksums, read and compared, then re-checked after the (empty)
//     catch-up;
//   - missing_s: those 10, and 5 more deleted from hubspot and 5 inserted
//     there that no link reaches: hubspot's row count no longer matches
//     what the links reach, so its keys are walked too.
func BenchmarkVerify(b *testing.B) {
	rows := pgtest.EnvInt("BENCH_VERIFY_ROWS", 1000000)
	rounds := pgtest.EnvInt("BENCH_ROUNDS", 3)
	r := newBenchRig(b)
	r.seed(b, rows)
	r.settle(b)
	for range b.N {
		var equal, differing, missing, heap []float64
		for round := range rounds {
			runtime.GC()
			peak := sampleHeap(10 * time.Millisecond)
			equal = append(equal, r.verifyRound(b, "equal", round, 0))
			heap = append(heap, mb(peak()))
		}
		behind := func(sql string) {
			require.NoError(b, pgx.BeginFunc(context.Background(), r.hub, func(tx pgx.Tx) error {
				if _, err := tx.Exec(context.Background(), "SET LOCAL session_replication_role = replica"); err != nil {
					return err
				}
				_, err := tx.Exec(context.Background(), sql, rows)
				return err
			}))
		}
		// Ids spread over the table: the 10 land in 10 chunks.
		behind(`UPDATE hs_contacts SET phone_number = 'drift' WHERE id IN (SELECT i * ($1::int / 10) FROM generate_series(1, 10) i)`)
		for round := range rounds {
			differing = append(differing, r.verifyRound(b, "differing", round, 10))
		}
		behind(`DELETE FROM hs_contacts WHERE id IN (SELECT i * ($1::int / 10) - 1 FROM generate_series(1, 5) i)`)
		behind(`INSERT INTO hs_contacts (id, firstname, email) SELECT $1::int + i, 'Ghost', 'ghost' || i || '@x.com' FROM generate_series(1, 5) i`)
		for round := range rounds {
			missing = append(missing, r.verifyRound(b, "missing", round, 20))
		}
		b.ReportMetric(pgtest.Median(equal), "equal_s")
		b.ReportMetric(pgtest.Median(heap), "peak_heap_MB")
		b.ReportMetric(pgtest.Median(differing), "differing_s")
		b.ReportMetric(pgtest.Median(missing), "missing_s")
	}
}

// verifyRound verifies the sync once, requires drift rows of drift, and
// returns the seconds it took.
func (r *benchRig) verifyRound(b *testing.B, name string, round int, drift int64) float64 {
	b.Helper()
	var rep *engine.VerifyReport
	c := r.timed(b, "timed", func(ctx context.Context) {
		var err error
		rep, err = r.eng.Verify(ctx, syncID, engine.VerifyOptions{})
		require.NoError(b, err)
	})
	require.Equal(b, drift, rep.Drifted(), "%+v", rep.Rows)
	b.Logf("%s, round %d: %d rows compared, %d drifting: %s; %.0f rows/s", name, round+1, rep.Compared, rep.Drifted(), c,
		float64(rep.Compared)/c.wall.Seconds())
	return c.wall.Seconds()
}
