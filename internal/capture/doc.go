// Package capture records every committed row change of the tables that
// tandem syncs, and moves those changes into the control database.
//
// # Trigger capture
//
// [Install] puts schema tandem on a node (versioned SQL embedded from
// sql/node) and four statement-level triggers on each captured table, one
// per event (INSERT, UPDATE, DELETE with transition tables; TRUNCATE). A
// bulk statement costs one trigger call. The trigger function writes one row
// per changed row into tandem.change_queue: table, key, op, old and new
// values (an UPDATE keeps only the columns whose value changed, and an
// UPDATE that changes nothing records nothing), the transaction's xid8, the
// statement time and the origin (the tandem.origin setting). A rolled-back
// transaction leaves nothing, as its queue rows roll back with it.
//
// # NOTIFY, coalesced
//
// A transaction that sends NOTIFY takes a cluster-wide lock at commit. The
// trigger therefore notifies channel tandem_changes only when nextval of the
// unlogged sequence tandem.notify_seq returns 1; the reader re-arms it
// (setval to 1, not called) before it reads. A burst of commits costs one
// NOTIFY, and the check costs no table read. NOTIFY is a hint: the queue and
// the cursors are the truth.
//
// # Reading without skipping
//
// [Reader] moves a node's changes into the control database's
// tandem.change_log with COPY. Its cursor is a pair of snapshots
// (pg_current_snapshot()): a window holds exactly the changes whose
// transaction is visible in the newer snapshot and not in the older one.
// Transaction ids below the older snapshot's xmin are complete; ids in its
// in-progress list are picked up in a later window, whenever they commit.
// So a transaction that wrote first and committed last is never skipped, and
// a long transaction delays no one else's changes. Within a window, rows go
// in queue-id order in bounded batches; the cursor (window and last id) is
// written in the same control transaction as the batch, so a crash neither
// skips nor repeats. Rows every consumer has taken are pruned.
//
// # Installing capture: wal
//
// A node that takes no trigger is read from its write-ahead log instead.
// [PlanInstallWAL] gives it schema tandem (for tandem.applied) but no
// capture trigger, makes publication [Publication] publish exactly the
// synced tables, and plans the pgoutput slot ([SlotName]) in [Plan.After]:
// PostgreSQL creates no logical slot in a transaction that has written, so
// [Apply] runs those statements after the COMMIT, still under the install
// lock. Install refuses, listing every problem at once, a server without
// wal_level=logical, a role without REPLICATION, and a table whose replica
// identity would leave its updates and deletes without the sync's key.
// [PlanUninstall] drops the publication and the database's tandem_* slots
// on any node, and refuses while one is streamed from.
package capture
