package demo

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Ada is the contact the first steps follow.
const (
	adaEmailCRM = "Ada.Lovelace@Example.com" // as crm writes it
	adaEmail    = "ada.lovelace@example.com" // lowercased on its way to hubspot
	company     = "Analytical Engines Ltd"
)

// insertInCRM: a row inserted in crm shows up in hubspot, mapped.
func (d *demo) insertInCRM(ctx context.Context) error {
	if _, err := d.write(ctx, "crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ada Lovelace', '`+adaEmailCRM+`', '+44 20 7946 0018')`); err != nil {
		return err
	}
	took, err := waitFor(ctx, "the contact to appear in hubspot", func() (bool, error) {
		return d.exists(ctx, "hubspot", `SELECT FROM hs_contacts WHERE email = $1`, adaEmail)
	})
	if err != nil {
		return err
	}
	got, err := d.row(ctx, "hubspot", `SELECT firstname, lastname, email, phone_number FROM hs_contacts WHERE email = $1`, adaEmail)
	if err != nil {
		return err
	}
	d.printf("    hubspot, %d ms later: %s\n", ms(took), got)
	d.printf("    full_name was split into firstname + lastname, email lowercased, phone renamed to phone_number\n")
	return expect("hubspot's row", got, "firstname=Ada lastname=Lovelace email="+adaEmail+" phone_number=+44 20 7946 0018")
}

// editInHubSpot: a change in hubspot flows back, reverse-mapped.
func (d *demo) editInHubSpot(ctx context.Context) error {
	if _, err := d.write(ctx, "hubspot", `UPDATE hs_contacts SET lastname = 'King' WHERE email = '`+adaEmail+`'`); err != nil {
		return err
	}
	took, err := waitFor(ctx, "the edit to reach crm", func() (bool, error) {
		return d.exists(ctx, "crm", `SELECT FROM contacts WHERE full_name = 'Ada King'`)
	})
	if err != nil {
		return err
	}
	got, err := d.row(ctx, "crm", `SELECT full_name, email, phone FROM contacts WHERE email = $1`, adaEmailCRM)
	if err != nil {
		return err
	}
	d.printf("    crm, %d ms later: %s\n", ms(took), got)
	d.printf("    firstname + lastname joined back into full_name; only the changed field was written\n")
	return expect("crm's row", got, "full_name=Ada King email="+adaEmailCRM+" phone=+44 20 7946 0018")
}

// latestWins: both sides change the same field between two runs; the later
// write wins and the other value is kept in sync_conflicts.
func (d *demo) latestWins(ctx context.Context) error {
	if err := d.stopDaemon(); err != nil {
		return err
	}
	d.printf("    daemon paused: as if it were down for a deploy while both sides keep working\n")
	if _, err := d.write(ctx, "crm", `UPDATE contacts SET phone = '+44 20 7946 0100' WHERE email = '`+adaEmailCRM+`'`); err != nil {
		return err
	}
	if _, err := d.write(ctx, "hubspot", `UPDATE hs_contacts SET phone_number = '+44 20 7946 0200' WHERE email = '`+adaEmail+`'`); err != nil {
		return err
	}
	res, err := d.eng.RunSync(ctx, "contacts", "manual")
	if err != nil {
		return err
	}
	d.printf("    one run of sync contacts (engine.RunSync, as `tandem run --once` does): run %d, %d conflict, %d row updated\n",
		res.RunID, res.Conflicts, res.Updated)
	if res.Conflicts != 1 {
		return fmt.Errorf("the run found %d conflicts, want 1", res.Conflicts)
	}
	crm, err := d.row(ctx, "crm", `SELECT phone FROM contacts WHERE email = $1`, adaEmailCRM)
	if err != nil {
		return err
	}
	hub, err := d.row(ctx, "hubspot", `SELECT phone_number FROM hs_contacts WHERE email = $1`, adaEmail)
	if err != nil {
		return err
	}
	d.printf("    now crm %s, hubspot %s: hubspot wrote last, so its value won on both sides\n", crm, hub)
	if err := expect("crm's phone", crm, "phone=+44 20 7946 0200"); err != nil {
		return err
	}
	d.printf("    the losing value is not lost:\n")
	return d.record(ctx, "control", `SELECT id, sync_id, status, kind, resolution, array_to_string(fields, ', ') AS fields,
		kept, lost FROM tandem.sync_conflicts WHERE sync_id = 'contacts' ORDER BY id DESC LIMIT 1`)
}

// manualQueued: a conflict on a sync with conflict: manual waits for a
// person and overwrites nothing.
func (d *demo) manualQueued(ctx context.Context) error {
	d.printf("    (the daemon is still paused, so that both changes meet in one run)\n")
	if _, err := d.write(ctx, "crm", `INSERT INTO companies (name, domain) VALUES ('`+company+`', 'analytical-engines.example')`); err != nil {
		return err
	}
	res, err := d.eng.RunSync(ctx, "companies", "manual")
	if err != nil {
		return err
	}
	d.printf("    run %d of sync companies: %d row created in hubspot.hs_companies\n", res.RunID, res.Created)
	if res.Created != 1 {
		return fmt.Errorf("the run created %d rows, want 1", res.Created)
	}
	if _, err := d.write(ctx, "crm", `UPDATE companies SET domain = 'engines.example.org' WHERE name = '`+company+`'`); err != nil {
		return err
	}
	if _, err := d.write(ctx, "hubspot", `UPDATE hs_companies SET website = 'analytical-engines.example.com' WHERE company_name = '`+company+`'`); err != nil {
		return err
	}
	if res, err = d.eng.RunSync(ctx, "companies", "manual"); err != nil {
		return err
	}
	d.printf("    run %d of sync companies: %d conflict, queued for a person; neither side is overwritten\n", res.RunID, res.Conflicts)
	if res.Conflicts != 1 {
		return fmt.Errorf("the run found %d conflicts, want 1", res.Conflicts)
	}
	d.printf("\n    $ tandem conflicts list\n")
	open, err := d.eng.Conflicts(ctx, "", false)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    ID\tSYNC\tKIND\tSTATUS\tFIELDS\tCREATED")
	for _, c := range open {
		fmt.Fprintf(tw, "    %d\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.SyncID, c.Kind, c.Status, strings.Join(c.Fields, ","),
			c.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(open) != 1 {
		return fmt.Errorf("%d open conflicts, want 1", len(open))
	}
	d.conflict = open[0].ID
	return d.companyBothSides(ctx, "meanwhile")
}

// manualResolved: the person takes hubspot's value; both sides hold it
// when ResolveConflict returns.
func (d *demo) manualResolved(ctx context.Context) error {
	took, err := d.startDaemon(ctx)
	if err != nil {
		return err
	}
	d.printf("    daemon resumed (ready after %d ms); the conflict stays open until someone decides\n", ms(took))
	d.printf("    $ tandem conflicts resolve %d --take target      # engine.ResolveConflict(ctx, %d, \"target\", nil, \"demo\")\n",
		d.conflict, d.conflict)
	start := time.Now()
	if err := d.eng.ResolveConflict(ctx, d.conflict, "target", nil, "demo"); err != nil {
		return err
	}
	d.printf("    conflict %d resolved in %d ms, applied to both sides before it returned:\n", d.conflict, ms(time.Since(start)))
	if err := d.companyBothSides(ctx, "now"); err != nil {
		return err
	}
	domain, err := d.row(ctx, "crm", `SELECT domain FROM companies WHERE name = $1`, company)
	if err != nil {
		return err
	}
	if err := expect("crm's domain", domain, "domain=analytical-engines.example.com"); err != nil {
		return err
	}
	return d.record(ctx, "control", `SELECT id, status, resolution, resolved_by, kept, lost FROM tandem.sync_conflicts WHERE id = $1`, d.conflict)
}

// companyBothSides prints the company's domain on each side.
func (d *demo) companyBothSides(ctx context.Context, when string) error {
	crm, err := d.row(ctx, "crm", `SELECT domain FROM companies WHERE name = $1`, company)
	if err != nil {
		return err
	}
	hub, err := d.row(ctx, "hubspot", `SELECT website FROM hs_companies WHERE company_name = $1`, company)
	if err != nil {
		return err
	}
	d.printf("    %s: crm %s, hubspot %s\n", when, crm, hub)
	return nil
}
