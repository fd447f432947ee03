package notifier_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/notifier"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// Not parallel: it counts goroutines, and parallel tests only run once the
// sequential ones are done.
func TestStopEndsEveryGoroutineAndConnection(t *testing.T) {
	crm, hubspot := pgtest.NewDB(t), pgtest.NewDB(t)
	crm.Exec(t, "SELECT 1")
	hubspot.Exec(t, "SELECT 1")
	before := runtime.NumGoroutine()

	n := &notifier.Notifier{Nodes: map[string]string{"crm": crm.URL, "hubspot": hubspot.URL}}
	require.NoError(t, n.Start(t.Context()))
	require.ErrorContains(t, n.Start(t.Context()), "already started")
	notify(t, crm, "public.contacts")
	require.True(t, nextWake(t, n).Nodes["crm"])

	stopped := make(chan struct{})
	go func() {
		n.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("Stop did not return")
	}
	n.Stop() // again: a no-op

	notify(t, crm, "public.after_stop")
	goroutinesSettle(t, before)
	require.Eventually(t, func() bool { return len(listenerPIDs(t, crm))+len(listenerPIDs(t, hubspot)) == 0 },
		waitTimeout, 10*time.Millisecond, "listening backends left after Stop")
	// No goroutine of the notifier is left to write C.
	select {
	case w := <-n.C():
		t.Fatalf("a wake after Stop: %+v", w)
	default:
	}
}

func TestStopBeforeStart(t *testing.T) {
	t.Parallel()
	n := &notifier.Notifier{}
	n.Stop()
	n.Stop()
}

// Cancelling Start's context stops the notifier as Stop does.
func TestCancellingStartContextStops(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx, cancel := context.WithCancel(t.Context())
	n := &notifier.Notifier{Nodes: map[string]string{"crm": db.URL}}
	require.NoError(t, n.Start(ctx))
	require.Len(t, listenerPIDs(t, db), 1)

	cancel()

	require.Eventually(t, func() bool { return len(listenerPIDs(t, db)) == 0 },
		waitTimeout, 10*time.Millisecond, "the listening backend is gone")
	n.Stop()
}

// goroutinesSettle waits until no more than want goroutines run. It polls
// from the test's own goroutine: require.Eventually runs its condition on a
// goroutine of its own, which would be counted.
func goroutinesSettle(t *testing.T, want int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for runtime.NumGoroutine() > want {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before Start:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
	}
}
