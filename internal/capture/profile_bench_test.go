package capture_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

// BenchmarkProfileTrigger is a profiling aid rather than a target: pgbench
// single-row UPDATEs on a captured table with pg_stat_statements tracking
// nested statements, printing the mean time of each statement the trigger
// runs, to show where capture's cost goes.
func BenchmarkProfileTrigger(b *testing.B) {
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}})
	require.NoError(b, err)
	defer c.Stop()
	n := newBenchNode(b, c, 10, true)
	n.exec(b, "CREATE EXTENSION pg_stat_statements")
	n.exec(b, "SELECT pg_stat_statements_reset()")
	tps := n.pgbench(b, singleRowScript, 2, 4)
	b.Logf("tps %.0f", tps)
	rows, err := n.pool.Query(context.Background(), "SELECT calls, round(mean_exec_time::numeric*1000, 1) AS us, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8")
	require.NoError(b, err)
	for rows.Next() {
		var calls int64
		var us float64
		var q string
		require.NoError(b, rows.Scan(&calls, &us, &q))
		b.Logf("%8d calls %7.1f us  %s", calls, us, q)
	}
}
