package control_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestMigrateCreatesSchemaAndIsIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()

	v, err := control.Version(ctx, db.Pool)
	require.NoError(t, err)
	require.Zero(t, v)

	applied, err := control.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	latest, err := control.Latest()
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	require.Equal(t, latest, applied[len(applied)-1])

	again, err := control.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Empty(t, again, "a second migrate applies nothing")

	v, err = control.Version(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, latest, v)

	for _, rel := range []string{"tandem.change_log", "tandem.cursors", "tandem.sync_runs", "tandem.sync_conflicts",
		"tandem.links", "tandem.sync_errors", "tandem.sync_configs", "tandem.sync_daily", "tandem.open_conflicts"} {
		var ok bool
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", rel).Scan(&ok))
		require.True(t, ok, "%s exists after migrate", rel)
	}
	id, err := control.InstanceID(ctx, db.Pool)
	require.NoError(t, err)
	require.Len(t, id, 36)
}

func TestConcurrentMigratesSerialize(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() { _, err := control.Migrate(ctx, db.Pool); errs <- err }()
	}
	for range 3 {
		require.NoError(t, <-errs)
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM tandem.instance").Scan(&n))
	require.Equal(t, 1, n)
}
