package cli_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// `tandem run --once` ends by pruning the changes past change_log_retention
// that the syncs have dealt with, and says so.
func TestRunOncePrunesTheChangeLog(t *testing.T) {
	t.Parallel()
	p := newPhones(t, fixture("manual.yaml"))
	ctl, crm := p.ctl, p.crm
	tandem := func(args ...string) result { return p.must(t, args...) }
	crm.Exec(t, "INSERT INTO contacts (email, phone) VALUES ('ann@x.com', '100')")
	tandem("run", "--once")
	crm.Exec(t, "UPDATE contacts SET phone = '101'")
	tandem("run", "--once")
	taken := column(t, ctl, "SELECT count(*)::text FROM tandem.change_log")[0]
	require.NotEqual(t, "0", taken)
	ctl.Exec(t, "UPDATE tandem.change_log SET logged_at = logged_at - interval '8 days'")

	res := tandem("run", "--once")
	require.Contains(t, res.stderr, "pruned tandem.change_log", res)
	require.Contains(t, res.stderr, "deleted="+taken, res)
	require.Equal(t, []string{"0"}, column(t, ctl, "SELECT count(*)::text FROM tandem.change_log WHERE logged_at < now() - interval '7 days'"))
}
