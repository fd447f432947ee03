package capture_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// A node restarting (fast shutdown, then start) between and during pulls
// loses and repeats nothing: the pool reconnects and the cursor, in the
// control database, says where to go on.
func TestReaderSurvivesNodeRestart(t *testing.T) {
	t.Parallel()
	nodeCluster, err := pgtest.Start(pgtest.Options{})
	require.NoError(t, err)
	t.Cleanup(nodeCluster.Stop)
	node := nodeCluster.NewDB(t)
	node.Exec(t, contactsDDL)
	install(t, node, tableRef("contacts"))
	ctl := newControl(t) // on the shared cluster, which keeps running
	r := newReader(t, node, ctl)
	r.BatchSize = 50
	ctx := context.Background()

	node.Exec(t, "INSERT INTO contacts (name) SELECT 'before-' || g FROM generate_series(1, 120) g")
	_, err = r.Pull(ctx)
	require.NoError(t, err)

	node.Exec(t, "INSERT INTO contacts (name) SELECT 'around-' || g FROM generate_series(1, 120) g")
	require.NoError(t, nodeCluster.Restart())
	// The first pull after a restart may find dead connections in the pool;
	// it fails cleanly and the next one goes on.
	if _, err := r.Pull(ctx); err != nil {
		t.Logf("first pull after restart: %v", err)
	}
	node.Exec(t, "INSERT INTO contacts (name) SELECT 'after-' || g FROM generate_series(1, 120) g")
	_, err = r.Pull(ctx)
	require.NoError(t, err)

	counts, names := logged(t, ctl)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	require.Len(t, names, 360)
	require.Zero(t, queueLen(t, node))
}

// The reader checks the node's queue against its configured limits after
// every pull and logs an error when it is over, so an operator sees it in
// the daemon's log as well as in `tandem status`.
func TestReaderWarnsWhenQueueIsOverLimit(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	var logs pgtest.LogBuffer
	r.Logger = logs.Logger()
	r.MaxQueueRows = 5
	ctx := context.Background()

	// A second consumer that never reads keeps the queue from being pruned.
	node.Exec(t, "INSERT INTO tandem.consumers (name, snapshot) VALUES ('stalled', '1:1:')")
	node.Exec(t, "INSERT INTO contacts (name) SELECT 'n' || g FROM generate_series(1, 3) g")
	_, err := r.Pull(ctx)
	require.NoError(t, err)
	require.NotContains(t, logs.String(), "over the limit")

	node.Exec(t, "INSERT INTO contacts (name) SELECT 'm' || g FROM generate_series(1, 3) g")
	_, err = r.Pull(ctx)
	require.NoError(t, err)
	require.Contains(t, logs.String(), "change queue holds about 6 rows, over the limit of 5")
	require.Contains(t, logs.String(), "node=crm")

	stats, err := capture.ReadQueueStats(ctx, node.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 6, stats.Rows)
	require.Equal(t, 2, stats.Consumers)
}

// A pull that stops part way checks the limits too (a backlog is when they
// matter), and a queue that stays over is not logged again at once.
func TestPullLogsAQueueOverItsLimitOnceAMinute(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	var logs pgtest.LogBuffer
	r.BatchSize, r.MaxQueueRows, r.Logger = 3, 5, logs.Logger()
	node.Exec(t, "INSERT INTO contacts (name) SELECT 'n' || i FROM generate_series(1, 20) i")

	for range 2 { // the queue stays over its limit: nothing is pruned until a window is done
		res, err := r.PullUpTo(context.Background(), 3, "")
		require.NoError(t, err)
		require.True(t, res.Cut)
		require.Equal(t, 1, strings.Count(logs.String(), "over the limit of 5"), logs.String())
	}
	require.Contains(t, logs.String(), "node=crm")
}
