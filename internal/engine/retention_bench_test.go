package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

// BenchmarkPruneChangeLog: change_log holds BENCH_PRUNE_ROWS (default
// 1,000,000) of crm's changes taken eight days ago. It times one prune
// while the sync has not taken them (nothing to delete: it walks past
// them), and one once it has (every one deleted), in batches of
// engine.DefaultPruneBatch.
func BenchmarkPruneChangeLog(b *testing.B) {
	n := pgtest.EnvInt("BENCH_PRUNE_ROWS", 1_000_000)
	for range b.N {
		r := newBenchRig(b)
		r.seed(b, 1000)
		r.exec(b, r.ctl, `INSERT INTO tandem.change_log (node, table_name, op, keys, old, new, captured_at, logged_at)
			SELECT 'crm', 'public.contacts', 'update', jsonb_build_object('id', 1 + i % 1000), '{"phone": "0"}',
				jsonb_build_object('phone', i::text), now() - interval '8 days', now() - interval '8 days'
			FROM generate_series(1, $1::bigint) i`, n)
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
			b.Logf("%s: %d of %d changes deleted: %s", phase, deleted, n, c)
			b.ReportMetric(c.wall.Seconds(), phase+"_s")
		}
	}
}
