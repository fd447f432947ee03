package demo

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
)

// The bulk steps: how many contacts are inserted, and how many of them are
// then updated.
const (
	bulkContacts = 10000
	bulkUpdated  = 15
)

// bulkInsert: one INSERT of many rows is one NOTIFY and one run.
func (d *demo) bulkInsert(ctx context.Context) error {
	after, err := d.lastRun(ctx)
	if err != nil {
		return err
	}
	n, err := d.write(ctx, "crm", fmt.Sprintf(`INSERT INTO contacts (full_name, email, phone)
SELECT (ARRAY['Grace','Alan','Edsger','Barbara','Donald','Margaret','Ken','Frances','John','Radia'])[1 + g %% 10]
       || ' ' || (ARRAY['Hopper','Turing','Dijkstra','Liskov','Knuth','Hamilton','Thompson','Allen','Backus','Perlman'])[1 + g / 10 %% 10],
       'contact' || g || '@example.com', '+1 555 ' || lpad(g::text, 5, '0')
FROM generate_series(1, %d) g`, bulkContacts))
	if err != nil {
		return err
	}
	d.printf("    INSERT 0 %d\n", n)
	took, err := waitFor(ctx, "the contacts to reach hubspot", func() (bool, error) {
		var got int64
		err := d.read["hubspot"].QueryRow(ctx, `SELECT count(*) FROM hs_contacts WHERE email LIKE 'contact%@example.com'`).Scan(&got)
		return got >= bulkContacts, err
	})
	if err != nil {
		return err
	}
	d.printf("    all %s in hubspot %d ms after the INSERT committed\n", thousands(bulkContacts), ms(took))
	runs, err := d.waitRuns(ctx, after, bulkContacts)
	if err != nil {
		return err
	}
	if c := runs.sum(func(r run) int64 { return r.created }); c != bulkContacts {
		return fmt.Errorf("the runs created %d rows, want %d", c, bulkContacts)
	}
	return nil
}

// bulkUpdate: a run's work is the changed rows, not the table: updating 15
// of 10,001 contacts writes 15 rows in hubspot, as both the run's row and
// PostgreSQL's own statistics say.
func (d *demo) bulkUpdate(ctx context.Context) error {
	before, err := d.tuplesUpdated(ctx)
	if err != nil {
		return err
	}
	after, err := d.lastRun(ctx)
	if err != nil {
		return err
	}
	if _, err := d.write(ctx, "crm", fmt.Sprintf(`UPDATE contacts SET phone = '+1 555 0199'
WHERE email IN (SELECT 'contact' || g || '@example.com' FROM generate_series(1, %d) g)`, bulkUpdated)); err != nil {
		return err
	}
	took, err := waitFor(ctx, "the updates to reach hubspot", func() (bool, error) {
		var got int64
		err := d.read["hubspot"].QueryRow(ctx, `SELECT count(*) FROM hs_contacts WHERE phone_number = '+1 555 0199'`).Scan(&got)
		return got >= bulkUpdated, err
	})
	if err != nil {
		return err
	}
	d.printf("    all %d in hubspot %d ms after the UPDATE committed\n", bulkUpdated, ms(took))
	runs, err := d.waitRuns(ctx, after, bulkUpdated)
	if err != nil {
		return err
	}
	upd, other := runs.sum(func(r run) int64 { return r.updated }), runs.sum(func(r run) int64 { return r.created + r.deleted })
	var rows int64
	if err := d.read["hubspot"].QueryRow(ctx, `SELECT count(*) FROM hs_contacts`).Scan(&rows); err != nil {
		return err
	}
	d.printf("    the run touched %d rows of the %s in hubspot.hs_contacts (sync_runs.updated = %d)\n", upd, thousands(rows), upd)
	if upd != bulkUpdated || other != 0 {
		return fmt.Errorf("the runs updated %d rows and created or deleted %d, want %d and 0", upd, other, bulkUpdated)
	}
	return d.checkStats(ctx, before)
}

// checkStats shows, from pg_stat_user_tables, how many rows of hs_contacts
// were updated since before.
func (d *demo) checkStats(ctx context.Context, before int64) error {
	// A backend publishes its table statistics when it goes idle, at most
	// once a second, else within 10 s. Closing the engine's idle hubspot
	// connections publishes theirs now; the pool opens new ones as needed.
	d.eng.Nodes["hubspot"].Reset()
	var now int64
	took, err := waitFor(ctx, "PostgreSQL's statistics to count the updates", func() (bool, error) {
		var err error
		now, err = d.tuplesUpdated(ctx)
		return now-before >= bulkUpdated, err
	})
	if err != nil {
		return fmt.Errorf("%w (n_tup_upd of hs_contacts went from %d to %d)", err, before, now)
	}
	d.printf("    pg_stat_user_tables on hubspot: hs_contacts.n_tup_upd %d -> %d, so %d rows updated (published after %d ms)\n",
		before, now, now-before, ms(took))
	if now-before != bulkUpdated {
		return fmt.Errorf("PostgreSQL counted %d updated rows in hs_contacts, want %d", now-before, bulkUpdated)
	}
	return nil
}

// tuplesUpdated reads n_tup_upd of hubspot's hs_contacts afresh.
func (d *demo) tuplesUpdated(ctx context.Context) (int64, error) {
	conn, err := d.read["hubspot"].Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		return 0, err
	}
	var n int64
	err = conn.QueryRow(ctx, `SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'public.hs_contacts'::regclass`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading pg_stat_user_tables on hubspot: %w", err)
	}
	return n, nil
}

// run is one row of tandem.sync_runs.
type run struct {
	id                                                   int64
	sync, trigger, status                                string
	synced, created, updated, deleted, conflicts, errors int64
	durationMS                                           int64
}

type runs []run

func (rs runs) sum(f func(run) int64) int64 {
	var n int64
	for _, r := range rs {
		n += f(r)
	}
	return n
}

const runColumns = `SELECT id, sync_id, trigger, status, synced, created, updated, deleted, conflicts, errors,
	coalesce(duration_ms, 0) AS duration_ms FROM tandem.sync_runs`

// lastRun returns the id of the newest run.
func (d *demo) lastRun(ctx context.Context) (int64, error) {
	var id int64
	err := d.read["control"].QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM tandem.sync_runs`).Scan(&id)
	return id, err
}

// waitRuns waits until the runs of sync contacts after run id after have
// finished and synced at least synced rows, and prints them.
func (d *demo) waitRuns(ctx context.Context, after, synced int64) (runs, error) {
	var got runs
	_, err := waitFor(ctx, "the daemon's run to be recorded", func() (bool, error) {
		var err error
		if got, err = d.runs(ctx, runColumns+` WHERE sync_id = 'contacts' AND id > $1 ORDER BY id`, after); err != nil {
			return false, err
		}
		for _, r := range got {
			if r.status == "running" {
				return false, nil
			}
		}
		return got.sum(func(r run) int64 { return r.synced }) >= synced, nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range got {
		d.printf("    sync_runs row %d (%s, %s): created %d, updated %d, deleted %d, conflicts %d, errors %d, in %d ms\n",
			r.id, r.trigger, r.status, r.created, r.updated, r.deleted, r.conflicts, r.errors, r.durationMS)
		if r.status != "succeeded" {
			return nil, fmt.Errorf("run %d %s", r.id, r.status)
		}
	}
	return got, nil
}

func (d *demo) runs(ctx context.Context, query string, args ...any) (runs, error) {
	rows, err := d.read["control"].Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading tandem.sync_runs: %w", err)
	}
	defer rows.Close()
	var out runs
	for rows.Next() {
		var r run
		if err := rows.Scan(&r.id, &r.sync, &r.trigger, &r.status, &r.synced, &r.created, &r.updated, &r.deleted,
			&r.conflicts, &r.errors, &r.durationMS); err != nil {
			return nil, fmt.Errorf("reading tandem.sync_runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// printRuns stops the daemon, so that no run is in hand, and prints
// tandem.sync_runs as an analyst would query it.
func (d *demo) printRuns(ctx context.Context) error {
	if err := d.stopDaemon(); err != nil {
		return err
	}
	d.printf("    daemon stopped (a run in hand finishes first)\n")
	query := runColumns + ` ORDER BY id`
	d.printf("    control=# %s;\n\n", strings.Join(strings.Fields(query), " "))
	all, err := d.runs(ctx, query)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    id\tsync_id\ttrigger\tstatus\tsynced\tcreated\tupdated\tdeleted\tconflicts\terrors\tduration_ms")
	for _, r := range all {
		fmt.Fprintf(tw, "    %d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.id, r.sync, r.trigger, r.status,
			r.synced, r.created, r.updated, r.deleted, r.conflicts, r.errors, r.durationMS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d.printf("    (%d runs; an idle check is not a run, so only runs that changed something or found a conflict are here)\n", len(all))
	if len(all) == 0 {
		return fmt.Errorf("tandem.sync_runs is empty")
	}
	return nil
}
