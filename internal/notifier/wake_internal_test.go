package notifier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func wakeOf(events ...event) Wake {
	w := newWake()
	for _, e := range events {
		w.add(e)
	}
	return w
}

// A Wake the consumer has not taken yet absorbs the next one, so deliver
// never blocks.
func TestDeliverMergesIntoAnUntakenWake(t *testing.T) {
	out := make(chan Wake, 1)

	deliver(out, wakeOf(event{node: "crm", table: "public.contacts"}))
	deliver(out, wakeOf(event{node: "crm", table: "public.deals"}, event{node: "hubspot", reconnected: true}))
	deliver(out, wakeOf(event{node: "hubspot", table: "public.hs_contacts"}))

	require.Len(t, out, 1)
	require.Equal(t, Wake{
		Nodes: map[string]bool{"crm": true, "hubspot": true},
		Tables: map[string]map[string]bool{
			"crm":     {"public.contacts": true, "public.deals": true},
			"hubspot": {"public.hs_contacts": true},
		},
		Reconnected: true,
	}, <-out)

	deliver(out, wakeOf(event{node: "crm"}))
	require.Equal(t, wakeOf(event{node: "crm"}), <-out, "a taken wake is not merged again")
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	lo, hi := 100*time.Millisecond, 10*time.Second
	for attempt := range 100 {
		ceiling := min(lo<<min(attempt, 20), hi)
		for range 20 {
			d := backoff(attempt, lo, hi)
			require.GreaterOrEqual(t, d, ceiling/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, ceiling, "attempt %d", attempt)
		}
	}
}

func TestSettingsDefaults(t *testing.T) {
	s := (&Notifier{}).resolveSettings()
	require.Equal(t, DefaultDebounce, s.debounce)
	require.Equal(t, DefaultMinBackoff, s.minBackoff)
	require.Equal(t, DefaultMaxBackoff, s.maxBackoff)
	require.NotNil(t, s.logger)

	s = (&Notifier{MinBackoff: time.Minute}).resolveSettings()
	require.Equal(t, time.Minute, s.maxBackoff, "max is never below min")
}
