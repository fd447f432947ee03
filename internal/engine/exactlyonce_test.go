package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// Invariants 1 and 4: runs cut off at random points (pull, plan, apply,
// record) and then redone never lose a change or apply one twice, and once
// writes stop both tables hold the same mapped data. In windows of 4 every
// run is several windows, each read ahead while the one before applies:
// the cuts land in look-aheads too.
func TestExactlyOnceAcrossCancellation(t *testing.T) {
	t.Parallel()
	for _, window := range []int{engine.DefaultWindow, 4} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			t.Parallel()
			exactlyOnceAcrossCancellation(t, window)
		})
	}
}

func exactlyOnceAcrossCancellation(t *testing.T, window int) {
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Window, r.eng.PullBatch = window, window
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed) // a failure replays with this seed
	rng := rand.New(rand.NewPCG(seed, 0))

	alive := map[string]bool{} // emails that must exist on both sides, once
	var synced []string        // emails on both sides after the last complete run
	cut := 0
	for i := range 20 {
		picks := slices.Clone(synced)
		rng.Shuffle(len(picks), func(a, b int) { picks[a], picks[b] = picks[b], picks[a] })
		take := func(n int) []string {
			n = min(n, len(picks))
			out := picks[:n]
			picks = picks[n:]
			return out
		}
		updates := map[string][]string{"crm": take(2), "hubspot": take(2)}
		both := take(2) // the same fields edited on both sides: conflicts
		deletes := map[string][]string{"crm": take(1), "hubspot": take(1)}
		order := []string{"crm", "hubspot"}
		if rng.IntN(2) == 0 {
			order[0], order[1] = order[1], order[0]
		}
		for _, node := range order {
			edit(r, node, i, updates[node], both, deletes[node], alive)
		}

		for range 2 {
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rng.IntN(40_000))*time.Microsecond)
			if _, err := r.runCtx(ctx, "contacts"); err != nil {
				cut++
			}
			cancel()
		}
		r.run("contacts")
		synced = synced[:0]
		for e, ok := range alive {
			if ok {
				synced = append(synced, e)
			}
		}
		slices.Sort(synced)
	}
	t.Logf("%d of 40 runs were cut off", cut)
	r.run("contacts") // the echoes of the last run
	r.idle("contacts")

	crm := r.rows("crm", `SELECT email, full_name, coalesce(phone, '') FROM contacts ORDER BY email`)
	hub := r.rows("hubspot", `SELECT email, concat_ws(' ', firstname, lastname), coalesce(phone_number, '') FROM hs_contacts ORDER BY email`)
	require.Equal(t, crm, hub, "both tables hold the same mapped data")
	require.Equal(t, synced, r.rows("crm", "SELECT email FROM contacts ORDER BY email"), "every insert exactly once in crm")
	require.Equal(t, synced, r.rows("hubspot", "SELECT email FROM hs_contacts ORDER BY email"), "every insert exactly once in hubspot")
	require.Equal(t, len(synced), r.ctlInt("SELECT count(*) FROM tandem.links"))
	require.Equal(t, len(synced), r.ctlInt("SELECT count(DISTINCT target_key) FROM tandem.links"))
	require.Empty(t, r.ctlRows("SELECT side, reason FROM tandem.sync_errors"))
	require.Equal(t, []string{"true"}, r.ctlRows("SELECT pending_run IS NULL FROM tandem.sync_state"))
	if window == 4 {
		require.Positive(t, r.eng.LookedAhead(), "no window took rows read ahead")
	}
}

// edit makes one round of application writes on a node: three inserts, the
// given updates (both: edits of fields the other side edits too) and
// deletes.
func edit(r *rig, node string, round int, updates, both, deletes []string, alive map[string]bool) {
	r.t.Helper()
	for j := range 3 {
		email := fmt.Sprintf("%s%d-%d@x.com", node[:1], round, j)
		if node == "crm" {
			r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ($1, $2, $3)`, fmt.Sprintf("C%d N%d", round, j), email, fmt.Sprint(round*10+j))
		} else {
			r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ($1, $2, $3, $4)`,
				fmt.Sprintf("H%d", round), fmt.Sprintf("N%d", j), email, fmt.Sprint(round*10+j))
		}
		alive[email] = true
	}
	for _, email := range append(slices.Clone(updates), both...) {
		if node == "crm" {
			r.exec("crm", `UPDATE contacts SET full_name = $1, phone = $2 WHERE email = $3`, fmt.Sprintf("Crm%d Edit", round), "c"+fmt.Sprint(round), email)
		} else {
			r.exec("hubspot", `UPDATE hs_contacts SET lastname = $1, phone_number = $2 WHERE email = $3`, fmt.Sprintf("Hub%d", round), "h"+fmt.Sprint(round), email)
		}
	}
	for _, email := range deletes {
		if node == "crm" {
			r.exec("crm", `DELETE FROM contacts WHERE email = $1`, email)
		} else {
			r.exec("hubspot", `DELETE FROM hs_contacts WHERE email = $1`, email)
		}
		alive[email] = false
	}
}
