package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
)

// TestVerifyExitCodes: verify prints its summary and exits 0 on tables in
// step, lists the drifting rows and exits 3 once a row changed behind
// tandem's back, and exits 2 on a bad command line.
func TestVerifyExitCodes(t *testing.T) {
	t.Parallel()
	p := newPhones(t, fixture("manual.yaml"))
	crm, hubspot := p.crm, p.hubspot
	tandem := func(args ...string) result { return p.run(t, args...) }
	crm.Exec(t, "INSERT INTO contacts (email, phone) SELECT 'p' || i || '@x.com', i::text FROM generate_series(1, 60) i")
	p.must(t, "run", "--once")

	r := tandem("verify", "contacts")
	require.Equal(t, cli.ExitOK, r.code, r)
	for _, want := range []string{"rows compared:     60\n", "missing on source: 0\n", "missing on target: 0\n",
		"differing:         0\n", "in step: both tables hold the same mapped data\n"} {
		require.Contains(t, r.stdout, want, r)
	}

	// 55 rows changed on hubspot with its triggers off: tandem never hears of it.
	require.NoError(t, pgx.BeginFunc(context.Background(), hubspot.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(context.Background(), "UPDATE hs_contacts SET phone_number = 'x' WHERE hs_id <= 55")
		return err
	}))
	r = tandem("verify", "contacts", "--chunk", "7")
	require.Equal(t, cli.ExitDrift, r.code, r)
	require.Contains(t, r.stdout, "differing:         55\n", r)
	// chunks of 7 rows, one bucket each: the eight chunks that hold rows 1 to 56
	require.Contains(t, r.stdout, "read row by row:   56 (linked rows whose bucket's checksums differed)\n", r)
	require.Contains(t, r.stdout, "drift: 55 rows\n", r)
	require.Contains(t, r.stdout, "... and 5 more\n", r)
	lines := strings.Split(r.stdout, "\n")
	head := slicesIndex(lines, "KIND")
	require.GreaterOrEqual(t, head, 0, r)
	require.Equal(t, []string{"KIND", "SOURCE", "KEY", "TARGET", "KEY", "FIELDS", "NOTE"}, strings.Fields(lines[head]))
	for i := 1; i <= 50; i++ { // in key order
		require.Equal(t, []string{"differing", fmt.Sprintf(`{"id":%d}`, i), fmt.Sprintf(`{"hs_id":%d}`, i), "phone/phone_number", "-"},
			strings.Fields(lines[head+i]), r)
	}
	require.Equal(t, "tandem: sync contacts: drift found: 55 rows differ between the two tables\n", r.stderr)

	for _, args := range [][]string{{"verify"}, {"verify", "contacts", "other"}, {"verify", "nosuch"}, {"verify", "contacts", "--chunk", "0"}} {
		r := tandem(args...)
		require.Equal(t, cli.ExitUsage, r.code, "tandem %s\n%s", strings.Join(args, " "), r)
	}
}

// slicesIndex is the index of the first line that starts with prefix, or -1.
func slicesIndex(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

// TestVerifyRepair: `verify --repair` settles the drift by the sync's
// strategy (here source_wins), re-creates a row deleted behind tandem's
// back, verifies again and exits 0; the value it overwrote is a conflict.
func TestVerifyRepair(t *testing.T) {
	t.Parallel()
	manual, err := os.ReadFile(fixture("manual.yaml"))
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "tandem.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(manual), "conflict: manual", "conflict: source_wins", 1)), 0o600))
	p := newPhones(t, cfg)
	ctl, crm, hubspot := p.ctl, p.crm, p.hubspot
	crm.Exec(t, "INSERT INTO contacts (email, phone) SELECT 'p' || i || '@x.com', i::text FROM generate_series(1, 40) i")
	p.must(t, "run", "--once")
	hubspot.Exec(t, `SET session_replication_role = replica;
		UPDATE hs_contacts SET phone_number = 'x' WHERE hs_id IN (3, 4);
		DELETE FROM hs_contacts WHERE hs_id = 9`)

	r := p.run(t, "verify", "contacts", "--repair")
	require.Equal(t, cli.ExitOK, r.code, r)
	require.Contains(t, r.stdout, "differing:         2\n", r)
	require.Contains(t, r.stdout, "missing on target: 1\n", r)
	require.Contains(t, r.stdout, "repaired: 3 rows written (1 created, 2 updated, 0 deleted), 0 errors; verifying again\n", r)
	require.Contains(t, r.stdout, "in step: both tables hold the same mapped data\n", r)
	require.Equal(t, []string{"3", "4"}, column(t, hubspot, `SELECT phone_number FROM hs_contacts WHERE email IN ('p3@x.com', 'p4@x.com') ORDER BY 1`))
	require.Equal(t, []string{`{"target": {"phone_number": "x"}}`, `{"target": {"phone_number": "x"}}`},
		column(t, ctl, `SELECT lost::text FROM tandem.sync_conflicts ORDER BY id`))
	r = p.run(t, "run", "--once")
	require.Contains(t, r.stdout, "sync contacts: 0 synced", r)
}
