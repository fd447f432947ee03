package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/demo"
)

const steps = 13

// TestDemo runs the whole demo and checks that every step succeeded and
// printed what it is there to show.
func TestDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := demo.Run(ctx, &out)
	s := out.String()
	require.NoError(t, err, s)

	for i := 1; i <= steps; i++ {
		require.Contains(t, s, fmt.Sprintf("\n[%d/%d] ", i, steps))
	}
	require.Equal(t, steps, strings.Count(s, "\n    ok ("), "every step ends ok:\n%s", s)
	require.NotContains(t, s, "FAILED")
	require.NotContains(t, s, "level=", "the daemon logged a warning or an error:\n%s", s)
	require.Contains(t, s, fmt.Sprintf("Demo complete: all %d steps succeeded.", steps))

	for _, want := range []string{
		// an insert in crm reaches hubspot, split; an edit in hubspot comes back, joined
		`hubspot, \d+ ms later: firstname=Ada lastname=Lovelace email=ada.lovelace@example.com`,
		`crm, \d+ ms later: full_name=Ada King `,
		// latest_wins: the later write won, the other value is in sync_conflicts
		`now crm phone=\+44 20 7946 0200, hubspot phone_number=\+44 20 7946 0200`,
		`resolution +\| latest_wins`,
		`lost +\| \{"source": \{"phone": "\+44 20 7946 0100"\}\}`,
		// manual: queued, listed, then resolved with hubspot's value on both sides
		`\n +ID +SYNC +KIND +STATUS +FIELDS +CREATED\n +\d+ +companies +update_update +open +domain/website `,
		`now: crm domain=analytical-engines.example.com, hubspot website=analytical-engines.example.com`,
		`resolution +\| manual:target`,
		`resolved_by +\| demo`,
		// bulk: one run creates 10,000; the update of 15 writes 15 rows
		`sync_runs row \d+ \(notify, succeeded\): created 10000, updated 0`,
		`sync_runs row \d+ \(notify, succeeded\): created 0, updated 15, deleted 0`,
		`the run touched 15 rows of the 10,001 in hubspot.hs_contacts`,
		`hs_contacts.n_tup_upd \d+ -> \d+, so 15 rows updated`,
		// the sync_runs table
		`\n +id +sync_id +trigger +status +synced +created +updated +deleted +conflicts +errors +duration_ms\n`,
		`\n +\d+ +contacts +notify +succeeded +10000 +10000 +0 +0 +0 +0 +\d+\n`,
		`\n +\d+ +contacts +notify +succeeded +15 +0 +15 +0 +0 +0 +\d+\n`,
		`\n +\d+ +companies +manual +succeeded +0 +0 +0 +0 +1 +0 +\d+\n`,
	} {
		require.Regexp(t, want, s)
	}
	require.NotRegexp(t, `\n +\d+ +\S+ +\S+ +running `, s, "the daemon was stopped before sync_runs was read")
	requireRemoved(t, s)
}

// TestDemoInterrupted cancels the demo in the middle, as Ctrl-C does: it
// fails naming the step, and still stops everything and removes the
// cluster's directory.
func TestDemoInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelAt{marker: fmt.Sprintf("[6/%d]", steps), cancel: cancel}
	err := demo.Run(ctx, w)
	s := w.String()
	require.Error(t, err, s)
	require.ErrorContains(t, err, "demo step 6 (")
	require.ErrorContains(t, err, "interrupted")
	require.Contains(t, s, "FAILED: interrupted")
	require.Contains(t, s, "daemon stopped")
	requireRemoved(t, s)
}

// requireRemoved checks that the cluster's directory the demo names is gone.
func requireRemoved(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`cluster stopped, (\S+) removed`).FindStringSubmatch(out)
	require.NotNil(t, m, "the demo does not say it removed the cluster:\n%s", out)
	require.NoDirExists(t, m[1])
}

// cancelAt cancels a context once the output contains marker.
type cancelAt struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelAt) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return n, err
}

func (c *cancelAt) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
