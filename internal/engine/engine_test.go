package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func twoNodes() map[string]string { return map[string]string{"crm": crmDDL, "hubspot": hubspotDDL} }

func TestEditsFlowBothWaysThroughTheMapping(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Mary Ann Lee', 'Mary@X.com', '555'), ('Bob', 'bob@x.com', NULL)`)
	res := r.run("contacts")
	require.Equal(t, 2, res.Created)
	require.Equal(t, []string{"Mary|Ann Lee|mary@x.com|555", "Bob|<nil>|bob@x.com|<nil>"},
		r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY id"))
	require.Equal(t, 2, r.ctlInt("SELECT count(*) FROM tandem.links WHERE sync_id = 'contacts'"))

	// The echo of that apply is not a change; nothing to do.
	require.True(t, r.run("contacts").Idle)

	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Smith', phone_number = '777' WHERE firstname = 'Bob'`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Updated)
	require.Equal(t, []string{"Mary Ann Lee|Mary@X.com|555", "Bob Smith|bob@x.com|777"},
		r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
	require.True(t, r.run("contacts").Idle)

	r.exec("crm", `DELETE FROM contacts WHERE full_name = 'Bob Smith'`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Deleted)
	require.Equal(t, []string{"Mary"}, r.rows("hubspot", "SELECT firstname FROM hs_contacts"))
	require.True(t, r.run("contacts").Idle)

	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Zoe', 'Q', 'zoe@x.com')`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{"Mary Ann Lee", "Zoe Q"}, r.rows("crm", "SELECT full_name FROM contacts ORDER BY id"))
	require.True(t, r.run("contacts").Idle)
	require.Equal(t, 4, r.ctlInt("SELECT count(*) FROM tandem.sync_runs WHERE status = 'succeeded'"))
}
