// Package demo is `tandem demo` (and `make demo`): the whole story of
// tandem on a throwaway local PostgreSQL, with nothing to configure.
//
// [Run] starts a cluster from the machine's server binaries
// (internal/pgtest: a temporary directory, a Unix socket only, the server run
// as the postgres user when the demo runs as root), creates three databases
// (control, crm and hubspot) with differently shaped tables, loads the
// embedded tandem.yaml, migrates the control database, installs capture on
// both nodes and starts the daemon ([engine.Daemon]). It then walks through
// what tandem does, printing each numbered step as it happens:
//
//   - an insert in crm appears in hubspot, its full_name split into
//     firstname and lastname, and an edit in hubspot flows back to crm;
//   - with the daemon paused (as if it were down while both sides kept
//     working), both sides change the same contact: latest_wins settles it
//     and tandem.sync_conflicts keeps the value that lost;
//   - the same on a sync with conflict: manual queues the conflict for a
//     person, who resolves it ([engine.Engine.ResolveConflict], what
//     `tandem conflicts resolve` runs);
//   - 10,000 contacts inserted in crm in one statement reach hubspot in one
//     run, and an update of 15 of them is a run that writes 15 rows, which
//     the sync_runs row and PostgreSQL's own statistics both show.
//
// It ends with the tandem.sync_runs table, then stops the daemon and the
// cluster and removes its directory, also when a step fails or the context
// is cancelled (Ctrl-C).
//
// Every wait polls the other side until the change is visible, with a
// timeout, and reports how long it took.
package demo
