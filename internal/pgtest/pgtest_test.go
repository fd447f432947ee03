package pgtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDBIsFreshAndLogical(t *testing.T) {
	t.Parallel()
	a := pgtest.NewDB(t)
	b := pgtest.NewDB(t)
	require.NotEqual(t, a.Name, b.Name)
	ctx := context.Background()
	a.Exec(t, "CREATE TABLE only_in_a (id int)")
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'").Scan(&n))
	require.Equal(t, 0, n, "databases must not share tables")
	var level string
	require.NoError(t, a.Pool.QueryRow(ctx, "SHOW wal_level").Scan(&level))
	require.Equal(t, "logical", level)
}
