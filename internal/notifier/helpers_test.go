package notifier_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/notifier"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// waitTimeout bounds every wait for a signal; generous, since a loaded
// machine running -race is slow and a pass never waits this long.
const waitTimeout = 30 * time.Second

// start starts n and stops it when the test ends.
func start(t *testing.T, n *notifier.Notifier) {
	t.Helper()
	require.NoError(t, n.Start(t.Context()))
	t.Cleanup(n.Stop)
}

// notify sends what a capture trigger sends, in its own transaction.
func notify(t *testing.T, db *pgtest.DB, table string) {
	t.Helper()
	db.Exec(t, "SELECT pg_notify($1, $2)", notifier.Channel, table)
}

// nextWake returns the next Wake on n.C().
func nextWake(t *testing.T, n *notifier.Notifier) notifier.Wake {
	t.Helper()
	select {
	case w := <-n.C():
		return w
	case <-time.After(waitTimeout):
		t.Fatalf("no wake within %s", waitTimeout)
		return notifier.Wake{}
	}
}

// gather merges wakes until done says the merged wake is complete, and
// returns it with the number of wakes it took.
func gather(t *testing.T, n *notifier.Notifier, done func(notifier.Wake) bool) (notifier.Wake, int) {
	t.Helper()
	acc := notifier.Wake{Nodes: map[string]bool{}, Tables: map[string]map[string]bool{}}
	count := 0
	deadline := time.After(waitTimeout)
	for !done(acc) {
		select {
		case w := <-n.C():
			count++
			require.Equal(t, len(w.Nodes), len(w.Tables), "every node of a wake has a table set: %+v", w)
			for node := range w.Nodes {
				acc.Nodes[node] = true
				if acc.Tables[node] == nil {
					acc.Tables[node] = map[string]bool{}
				}
				for table := range w.Tables[node] {
					acc.Tables[node][table] = true
				}
			}
			acc.Reconnected = acc.Reconnected || w.Reconnected
		case <-deadline:
			t.Fatalf("wakes so far (%d) never completed: %+v", count, acc)
		}
	}
	return acc, count
}

// listenerPIDs returns the backends of db that LISTEN.
func listenerPIDs(t *testing.T, db *pgtest.DB) []uint32 {
	t.Helper()
	return listenerPIDsVia(t, db.Pool, db.Name)
}

// listenerPIDsVia asks q for the backends of database name that LISTEN.
func listenerPIDsVia(t *testing.T, q querier, name string) []uint32 {
	t.Helper()
	rows, err := q.Query(t.Context(), `SELECT pid FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`, name)
	require.NoError(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	require.NoError(t, err)
	return pids
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// clusterConn connects to the cluster's maintenance database, for
// statements about a test database that must not run inside it.
func clusterConn(t *testing.T, db *pgtest.DB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.Cluster.URL("postgres"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.WithoutCancel(t.Context())) })
	return conn
}
