package main_test

import (
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
