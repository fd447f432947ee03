package capture_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// After a NOTIFY, further commits stay silent until the reader drains the
// queue and re-arms; then the next commit notifies again. Notifications are
// delivered in commit order, so if any silent commit had notified (on table
// deals), the notification after the re-arm (on contacts) would not be next.
func TestNotifyIsCoalescedUntilTheReaderRearms(t *testing.T) {
	t.Parallel()
	node, ctl := pgtestDBWith(t, contactsDDL+"; CREATE TABLE deals (id serial PRIMARY KEY, v int)"), newControl(t)
	install(t, node, tableRef("contacts"), tableRef("deals"))
	r := newReader(t, node, ctl)
	ctx := context.Background()
	listener := connect(t, node.URL)
	_, err := listener.Exec(ctx, "LISTEN tandem_changes")
	require.NoError(t, err)
	next := func() string {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		require.NoError(t, err)
		return n.Payload
	}

	node.Exec(t, "INSERT INTO contacts (name) VALUES ('first')")
	require.Equal(t, "public.contacts", next())

	// 8 writers, 200 commits, queue not drained: no NOTIFY at all.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				_, err := node.Pool.Exec(ctx, "INSERT INTO deals (v) VALUES (1)")
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()

	_, err = r.Pull(ctx) // drains and re-arms
	require.NoError(t, err)
	node.Exec(t, "UPDATE contacts SET score = 1")
	require.Equal(t, "public.contacts", next(), "the first commit after the re-arm notifies, and nothing came before it")

	// A statement that captures nothing does not notify (nor disarm).
	_, err = r.Pull(ctx)
	require.NoError(t, err)
	node.Exec(t, "UPDATE deals SET v = v")
	node.Exec(t, "UPDATE contacts SET score = 2")
	require.Equal(t, "public.contacts", next())
}
