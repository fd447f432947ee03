package main_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

// TestSigtermStopsCleanly: SIGTERM (and SIGINT) end `tandem run` with exit
// 0 after the run in hand, and what was committed before stays consistent.
func TestSigtermStopsCleanly(t *testing.T) {
	bin := buildTandem(t)
	ctl, crm, hub := pgtest.NewDB(t), pgtest.NewDB(t), pgtest.NewDB(t)
	crm.Exec(t, `CREATE TABLE contacts (id bigserial PRIMARY KEY, full_name text, email text UNIQUE, phone text)`)
	hub.Exec(t, `CREATE TABLE hs_contacts (id bigserial PRIMARY KEY, firstname text, lastname text, email text UNIQUE, phone_number text)`)
	cfg := filepath.Join(t.TempDir(), "tandem.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(crashConfig), 0o600))
	env := append(os.Environ(), "CTL="+ctl.URL, "CRM="+crm.URL, "HUB="+hub.URL)
	tandem(t, bin, env, "-c", cfg, "migrate")
	tandem(t, bin, env, "-c", cfg, "install", "crm")
	tandem(t, bin, env, "-c", cfg, "install", "hubspot")

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
