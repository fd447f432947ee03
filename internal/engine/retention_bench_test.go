package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

// BenchmarkPruneChangeLog: change_log holds BENCH_PRUNE_ROWS (default
// 1,000,000) of crm's changes taken eight days ago, then as many taken
// now. It times one prune while the sync has taken none of them (nothing
// to delete: it walks past the old ones), and one once it has taken them
// all (the old ones deleted, in batches of engine.DefaultPruneBatch).
func BenchmarkPruneChangeLog(b *testing.B) {
	n := pgtest.EnvInt("BENCH_PRUNE_ROWS", 1_000_000)
	for range b.N {
		r := newBenchRig(b)
		r.seed(b, 1000)
		r.exec(b, r.ctl, `INSERT INTO tandem.change_log (node, table_name, op, keys, old, new, captured_at, logged_at)
			SELECT 'crm', 'public.contacts', 'update', jsonb_build_object('id', 1 + i % 1000), '{"phone": "0"}',
				jsonb_build_object('phone', i::text), now() - interval '8 days', now() - CASE WHEN i <= $1 THEN interval '8 days' ELSE '0' END
			FROM generate_series(1, 2 * $1::bigint) i`, n)
		r.settle(b)
		for _, phase := range []string{"stalled", "taken"} {
			if phase == "taken" {
				r.exec(b, r.ctl, `UPDATE tandem.sync_state SET source_through = (SELECT max(id) FROM tandem.change_log)`)
			}
			var deleted int64
			c := r.timed(b, "prune", func(ctx context.Context) {
				res, err := r.eng.PruneChangeLog(ctx)
				require.NoError(b, err)
				deleted = res.Deleted
			})
			want := map[string]int64{"stalled": 0, "taken": int64(n)}[phase]
			require.Equal(b, want, deleted, phase)
			require.Equal(b, n, r.count(b, r.ctl, `SELECT count(*) FROM tandem.change_log WHERE logged_at > now() - interval '1 day'`))
			b.Logf("%s: %d of %d old changes deleted, %d recent ones kept: %s", phase, deleted, n, n, c)
			b.ReportMetric(c.wall.Seconds(), phase+"_s")
		}
	}
}
