package main_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSigtermStopsCleanly: SIGTERM (and SIGINT) end `tandem run` with exit
// 0 after the run in hand, and what was committed before stays consistent.
func TestSigtermStopsCleanly(t *testing.T) {
	s := newSetup(t)
	bin, env, cfg, ctl, crm, hub := s.bin, s.env, s.cfg, s.ctl, s.crm, s.hub

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		d := startDaemon(t, bin, env, cfg)
		crm.Exec(t, `INSERT INTO contacts (full_name, email) SELECT 'P ' || g, g || '@x' FROM generate_series(1, 2000) g`)
		require.NoError(t, d.cmd.Process.Signal(sig))
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			t.Fatalf("tandem run did not exit within a minute of %v", sig)
		}
		require.NoError(t, d.cmd.Wait(), "exit status after %v", sig)
		crm.Exec(t, `DELETE FROM contacts`)
	}
	// Whatever the stops left half done, one more run completes it: no run is left failed.
	tandem(t, bin, env, "-c", cfg, "run", "--once")
	require.Equal(t, rowsOf(t, crm, `SELECT email FROM contacts ORDER BY email`), rowsOf(t, hub, `SELECT email FROM hs_contacts ORDER BY email`))
	require.Empty(t, rowsOf(t, ctl, `SELECT error FROM tandem.sync_runs WHERE status <> 'succeeded'`))
}

// TestSigtermDuringInitialSync: SIGTERM ends `tandem run` after the chunk
// of the initial sync in hand, not after the whole initial sync; the next
// start goes on from there.
func TestSigtermDuringInitialSync(t *testing.T) {
	s := newSetup(t)
	s.crm.Exec(t, `INSERT INTO contacts (full_name, email, phone)
		SELECT 'Crm Person' || n, 'p' || n || '@x', n::text FROM generate_series(1, 100000) n`)
	d := startDaemon(t, s.bin, s.env, s.cfg)
	progress := func() (done, total int64, under bool) {
		err := s.ctl.Pool.QueryRow(context.Background(), `SELECT initial_done, coalesce(initial_total, 0), initial_phase IS NOT NULL
			FROM tandem.sync_state WHERE sync_id = 'contacts'`).Scan(&done, &total, &under)
		if err != nil {
			return 0, 0, false
		}
		return done, total, under
	}
	require.Eventually(t, func() bool { done, _, under := progress(); return under && done > 0 }, time.Minute, 5*time.Millisecond,
		"the initial sync never got under way")
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		t.Fatal("tandem run did not exit within a minute of SIGTERM")
	}
	require.NoError(t, d.cmd.Wait())
	done, total, under := progress()
	require.True(t, under, "the initial sync finished before the daemon exited")
	require.Less(t, done, total)

	out := tandem(t, s.bin, s.env, "-c", s.cfg, "run", "--once")
	require.Contains(t, out, "sync contacts: ")
	_, _, under = progress()
	require.False(t, under)
	require.Equal(t, rowsOf(t, s.crm, `SELECT email FROM contacts ORDER BY email`), rowsOf(t, s.hub, `SELECT email FROM hs_contacts ORDER BY email`))
}
