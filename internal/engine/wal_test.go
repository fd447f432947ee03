package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// walYAML is the contacts sync with hubspot captured from its WAL.
func walYAML(extra string) string {
	return strings.Replace(contactsYAML(extra), `hubspot: { dsn: "${HUB}" }`, `hubspot: { dsn: "${HUB}", capture: wal }`, 1)
}

// walNodes is twoNodes with hubspot's table logging full old rows, so an
// update names only the columns it changed and edits of different fields
// on the two sides merge.
func walNodes() map[string]string {
	return map[string]string{"crm": crmDDL, "hubspot": hubspotDDL + "; ALTER TABLE hs_contacts REPLICA IDENTITY FULL"}
}

func TestWALNodeSyncsBothWaysWithoutEchoes(t *testing.T) {
	t.Parallel()
	r := newRig(t, walYAML(""), walNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Mary Ann Lee', 'Mary@X.com', '555'), ('Bob', 'bob@x.com', NULL)`)
	require.Equal(t, 2, r.run("contacts").Created)
	require.Equal(t, []string{"Mary|Ann Lee|mary@x.com|555", "Bob|<nil>|bob@x.com|<nil>"},
		r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY id"))
	r.idle("contacts") // the applies' echoes in hubspot's WAL are known as the sync's own
	r.idle("contacts")

	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Smith', phone_number = '777' WHERE firstname = 'Bob'`)
	require.Equal(t, 1, r.run("contacts").Updated)
	require.Equal(t, []string{"Mary Ann Lee|Mary@X.com|555", "Bob Smith|bob@x.com|777"},
		r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
	r.idle("contacts")

	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Cy', 'Young', 'cy@x.com')`)
	require.Equal(t, 1, r.run("contacts").Created)
	r.exec("hubspot", `DELETE FROM hs_contacts WHERE firstname = 'Bob'`)
	require.Equal(t, 1, r.run("contacts").Deleted)
	require.Equal(t, []string{"Mary Ann Lee", "Cy Young"}, r.rows("crm", "SELECT full_name FROM contacts ORDER BY id"))
	r.idle("contacts")
	require.Equal(t, 2, r.ctlInt("SELECT count(*) FROM tandem.links"))
}

// Edits of different fields on a trigger node and a wal node merge; edits
// of the same field are a conflict, settled and recorded.
func TestWALNodeConflictsAndMerges(t *testing.T) {
	t.Parallel()
	r := newRig(t, walYAML("    conflict: latest_wins\n"), walNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.run("contacts")
	r.idle("contacts")

	r.exec("crm", `UPDATE contacts SET email = 'ann@y.com'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '2'`)
	res := r.run("contacts")
	require.Zero(t, res.Conflicts, "different fields merge")
	require.Equal(t, []string{"ann@y.com|2"}, r.rows("crm", "SELECT email, phone FROM contacts"))
	require.Equal(t, []string{"ann@y.com|2"}, r.rows("hubspot", "SELECT email, phone_number FROM hs_contacts"))
	r.idle("contacts")

	r.exec("crm", `UPDATE contacts SET phone = 'crm'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'hub'`) // later: it wins
	require.Equal(t, 1, r.run("contacts").Conflicts)
	require.Equal(t, []string{"hub"}, r.rows("crm", "SELECT phone FROM contacts"))
	require.Equal(t, []string{"hub"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"))
	require.Equal(t, []string{`latest_wins|{"source": {"phone": "crm"}}`}, r.ctlRows(`SELECT resolution, lost::text FROM tandem.sync_conflicts`))
	r.idle("contacts")
}

// The daemon wakes on what the WAL stream writes, not on its interval.
func TestDaemonWakesOnTheWALStream(t *testing.T) {
	t.Parallel()
	r := newRig(t, walYAML("    interval: 1h\n"), walNodes())
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- (&engine.Daemon{Engine: r.eng, Ready: func() { close(ready) }}).Run(ctx) }()
	<-ready
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Cy', 'Young', 'cy@x.com')`)
	require.Eventually(t, func() bool {
		return len(r.rows("crm", "SELECT email FROM contacts")) == 1
	}, 20*time.Second, 5*time.Millisecond, "hubspot's insert never reached crm")
	stop()
	require.NoError(t, <-done)
}

// A row created on the wal node, then edited on the trigger node before and
// after the creation's echoes are taken: every edit reaches the wal node.
func TestWALNodeRowCreatedThereThenEditedElsewhere(t *testing.T) {
	t.Parallel()
	r := newRig(t, walYAML("    conflict: latest_wins\n"), walNodes())
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Hub', 'One', 'one@x', 'h1')`)
	require.Equal(t, 1, r.run("contacts").Created)
	// Edited on crm at once: the run takes the creation's marker and the edit together.
	r.exec("crm", `UPDATE contacts SET phone = 'c1' WHERE email = 'one@x'`)
	require.Equal(t, 1, r.run("contacts").Updated)
	require.Equal(t, []string{"c1"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"))
	r.idle("contacts")
	// Both sides edit it in one window, different fields: both edits stay.
	r.exec("crm", `UPDATE contacts SET phone = 'c2' WHERE email = 'one@x'`)
	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Two' WHERE email = 'one@x'`)
	r.run("contacts")
	require.Equal(t, []string{"Hub Two|c2"}, r.rows("crm", "SELECT full_name, phone FROM contacts"))
	require.Equal(t, []string{"Hub|Two|c2"}, r.rows("hubspot", "SELECT firstname, lastname, phone_number FROM hs_contacts"))
	r.idle("contacts")
}
