package notifier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/notifier"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestNotifyArrivesAsWake(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	n := &notifier.Notifier{Nodes: map[string]string{"crm": db.URL}}
	start(t, n)

	notify(t, db, "public.contacts")

	require.Equal(t, notifier.Wake{
		Nodes:  map[string]bool{"crm": true},
		Tables: map[string]map[string]bool{"crm": {"public.contacts": true}},
	}, nextWake(t, n))
}

// Fifty commits, each with its own NOTIFY, make a handful of wakes that
// together name every table. The debounce is long enough for the whole
// burst even on a slow machine, so the bound on wakes cannot flake.
func TestBurstIsGatheredIntoFewWakes(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	n := &notifier.Notifier{Nodes: map[string]string{"crm": db.URL}, Debounce: 500 * time.Millisecond}
	start(t, n)

	const burst = 50
	want := map[string]bool{}
	for i := range burst {
		table := fmt.Sprintf("public.t%02d", i)
		want[table] = true
		notify(t, db, table)
	}

	got, wakes := gather(t, n, func(w notifier.Wake) bool { return len(w.Tables["crm"]) == burst })
	require.Equal(t, want, got.Tables["crm"])
	require.LessOrEqual(t, wakes, 5, "a burst of %d notifications made %d wakes", burst, wakes)
	require.False(t, got.Reconnected)
}

func TestNodesAreDistinguished(t *testing.T) {
	t.Parallel()
	crm, hubspot := pgtest.NewDB(t), pgtest.NewDB(t)
	n := &notifier.Notifier{Nodes: map[string]string{"crm": crm.URL, "hubspot": hubspot.URL}}
	start(t, n)

	notify(t, crm, "public.contacts")
	notify(t, hubspot, "public.hs_contacts")
	notify(t, hubspot, "public.hs_deals")

	got, _ := gather(t, n, func(w notifier.Wake) bool {
		return len(w.Tables["crm"]) == 1 && len(w.Tables["hubspot"]) == 2
	})
	require.Equal(t, map[string]bool{"crm": true, "hubspot": true}, got.Nodes)
	require.Equal(t, map[string]map[string]bool{
		"crm":     {"public.contacts": true},
		"hubspot": {"public.hs_contacts": true, "public.hs_deals": true},
	}, got.Tables)
}

// A NOTIFY on another channel is not ours, even on the same connection's
// database.
func TestOtherChannelsAreIgnored(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	n := &notifier.Notifier{Nodes: map[string]string{"crm": db.URL}}
	start(t, n)

	// Notifications of one transaction arrive in order: if the first were
	// passed on, the wake would hold it.
	db.Exec(t, "SELECT pg_notify('something_else', 'public.nope'), pg_notify($1, 'public.contacts')", notifier.Channel)

	require.Equal(t, map[string]bool{"public.contacts": true}, nextWake(t, n).Tables["crm"])
}

func TestStartFailsNamingTheNodeNotThePassword(t *testing.T) {
	t.Parallel()
	const password = "hunter2-secret"
	for _, tc := range []struct{ name, dsn string }{
		{"unreachable URL", "postgres://tandem:" + password + "@127.0.0.1:1/tandem?sslmode=disable&connect_timeout=5"},
		{"unreachable key-value", "host=127.0.0.1 port=1 user=tandem password=" + password + " dbname=tandem sslmode=disable connect_timeout=5"},
		{"malformed URL", "postgres://tandem:" + password + "@localhost:notaport/tandem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			good := pgtest.NewDB(t)
			n := &notifier.Notifier{Nodes: map[string]string{"good": good.URL, "broken": tc.dsn}}

			err := n.Start(t.Context())

			require.ErrorContains(t, err, "node broken")
			require.NotContains(t, err.Error(), password)
			n.Stop()
			n.Stop()
			require.Eventually(t, func() bool { return len(listenerPIDs(t, good)) == 0 },
				waitTimeout, 10*time.Millisecond, "the good node's connection is closed")
			require.Empty(t, n.C(), "no wake from a failed start")
		})
	}
}

func TestStartWithoutNodesFails(t *testing.T) {
	t.Parallel()
	n := &notifier.Notifier{}
	require.ErrorContains(t, n.Start(t.Context()), "no nodes")
	n.Stop()
}
