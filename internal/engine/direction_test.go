package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOneWayDirections: a one-way sync copies its direction only; the other
// side's edits stay where they are.
func TestOneWayDirections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		direction        string
		crmName, hubName string // after an edit on each side
	}{
		{"source_to_target", "Crm Edit", "Crm Edit"},
		{"target_to_source", "Hub Edit", "Hub Edit"},
	} {
		t.Run(tc.direction, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, contactsYAML("    direction: "+tc.direction+"\n"), twoNodes())
			if tc.direction == "source_to_target" {
				r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('Crm Edit', 'a@x')`)
				r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Hub', 'Only', 'b@x')`)
			} else {
				r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Hub', 'Edit', 'a@x')`)
				r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('Crm Only', 'b@x')`)
			}
			res := r.run("contacts")
			require.Equal(t, 1, res.Created)
			require.Equal(t, []string{tc.crmName}, r.rows("crm", `SELECT full_name FROM contacts WHERE email = 'a@x'`))
			require.Equal(t, []string{tc.hubName}, r.rows("hubspot", `SELECT concat_ws(' ', firstname, lastname) FROM hs_contacts WHERE email = 'a@x'`))
			// b@x was written on the side that does not flow: it stays there only.
			require.Equal(t, 1, r.nodeInt("crm", `SELECT count(*) FROM contacts WHERE email = 'b@x'`)+
				r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE email = 'b@x'`))
			r.idle("contacts")
		})
	}
}

// TestTransformErrorGoesToSyncErrors: a value a transform cannot take sends
// that row to sync_errors with the reason; the other rows apply.
func TestTransformErrorGoesToSyncErrors(t *testing.T) {
	t.Parallel()
	yaml := contactsYAMLWith("", `      - { source: email, target: email }
      - { source: phone, target: score, transform: to_number }
`)
	r := newRig(t, yaml, twoNodes())
	r.exec("crm", `INSERT INTO contacts (email, phone) VALUES ('a@x', '42'), ('b@x', 'call me'), ('c@x', NULL)`)
	res := r.run("contacts")
	require.Equal(t, 2, res.Created)
	require.Equal(t, 1, res.Errors)
	require.Equal(t, []string{"a@x|42", "c@x|<nil>"}, r.rows("hubspot", `SELECT email, score FROM hs_contacts ORDER BY email`))
	reason := r.ctlRows(`SELECT reason FROM tandem.sync_errors WHERE resolved_at IS NULL`)
	require.Len(t, reason, 1)
	require.Contains(t, reason[0], `"call me" is not a number`)
	require.Contains(t, reason[0], "phone")

	// Fixing the value at the source clears it.
	r.exec("crm", `UPDATE contacts SET phone = '7' WHERE email = 'b@x'`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{"b@x|7"}, r.rows("hubspot", `SELECT email, score FROM hs_contacts WHERE email = 'b@x'`))
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_errors WHERE resolved_at IS NULL`), "the error is settled")
}
