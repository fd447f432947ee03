package notifier_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/notifier"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// waitReconnected reads wakes until one says node reconnected.
func waitReconnected(t *testing.T, n *notifier.Notifier, node string) {
	t.Helper()
	gather(t, n, func(w notifier.Wake) bool { return w.Reconnected && w.Nodes[node] })
}

// terminateListener ends db's one listening backend, asking q, and returns
// its pid.
func terminateListener(t *testing.T, q querier, db *pgtest.DB) uint32 {
	t.Helper()
	pids := listenerPIDsVia(t, q, db.Name)
	require.Len(t, pids, 1, "one listening backend")
	rows, err := q.Query(t.Context(), "SELECT pg_terminate_backend($1)", pids[0])
	require.NoError(t, err)
	rows.Close()
	require.NoError(t, rows.Err())
	return pids[0]
}

func TestReconnectsAfterTheBackendIsTerminated(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	logs := &pgtest.LogBuffer{}
	n := &notifier.Notifier{
		Nodes:      map[string]string{"crm": db.URL},
		Logger:     logs.Logger(),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	}
	start(t, n)
	notify(t, db, "public.contacts")
	require.False(t, nextWake(t, n).Reconnected)

	old := terminateListener(t, db.Pool, db)

	waitReconnected(t, n, "crm")
	pids := listenerPIDs(t, db)
	require.Len(t, pids, 1)
	require.NotEqual(t, old, pids[0], "a new backend listens")
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "node=crm err=")

	notify(t, db, "public.deals")
	got, _ := gather(t, n, func(w notifier.Wake) bool { return w.Tables["crm"]["public.deals"] })
	require.Equal(t, map[string]bool{"public.deals": true}, got.Tables["crm"])
}

// While the node refuses connections the notifier keeps retrying, logging
// each failure, and it listens again once the node is back.
func TestReconnectRetriesUntilTheNodeIsBack(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	logs := &pgtest.LogBuffer{}
	n := &notifier.Notifier{
		Nodes:      map[string]string{"crm": db.URL},
		Logger:     logs.Logger(),
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	}
	start(t, n)
	admin := clusterConn(t, db)
	ident := `"` + db.Name + `"` // pgtest names are [a-z0-9_]
	_, err := admin.Exec(t.Context(), "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS false")
	require.NoError(t, err)
	t.Cleanup(func() { // so that pgtest can drop it even if the test fails early
		_, _ = admin.Exec(t.Context(), "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true")
	})

	terminateListener(t, admin, db)
	require.Eventually(t, func() bool {
		return strings.Count(logs.String(), "reconnecting failed") >= 2
	}, waitTimeout, 5*time.Millisecond, "reconnect attempts are logged")
	select {
	case w := <-n.C():
		t.Fatalf("a wake while the node refuses connections: %+v", w)
	default:
	}

	_, err = admin.Exec(t.Context(), "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true")
	require.NoError(t, err)
	waitReconnected(t, n, "crm")
	notify(t, db, "public.contacts")
	gather(t, n, func(w notifier.Wake) bool { return w.Tables["crm"]["public.contacts"] })
}
