// Package engine runs syncs: it pulls each side's captured changes into the
// control database, collapses them to one net change per entity, resolves
// the two sides against each other through tandem.links, applies the result
// to both nodes, and records the run.
//
// # Exactly once
//
// A run first records its window (the change_log ids it will consume on
// each side) in tandem.sync_state, with its sync_runs row, in one control
// transaction. It then applies to each node in one transaction per node that
// also writes the node's tandem.applied row for the sync, holding the run id
// and what the apply created. Last, one control transaction records links,
// conflicts and errors, advances the cursors and completes the run. A run cut
// off anywhere is redone on the same window; a node whose tandem.applied row
// already names the run is not written again, and what it created is read
// back from that row. So no change is applied twice or skipped.
//
// # Echoes and concurrent writes
//
// Writes the engine makes carry tandem.origin = the sync's id, so the sync
// recognises them when they come back through capture and does not send
// them back (another sync from the same node does propagate them: star
// topologies). They are not simply dropped: an application write to a field
// that the engine's own write then overwrote (the two raced between a run's
// read and its apply) shows up in the window as an application change
// followed by an echo of the same field. The application's value was lost
// to the sync; it is recorded as a conflict of kind concurrent_apply, and
// both sides keep the engine's value, so they converge.
//
// When no other sync reads the table, the apply also sets tandem.marked to
// the table, so the node's trigger (capture version 3) records none of its
// rows, and writes one change_queue row of op "applied" listing its writes,
// after them, in the same transaction. loadChanges expands that marker into
// the echoes the trigger would have captured. Row locks order a racing
// application write before the marker exactly as before the per-row echo.
//
// # Resolution
//
// Per entity: changes to disjoint fields merge; overlapping fields whose
// mapped values differ are conflicts, settled by the sync's strategy per
// field (latest_wins: the later capture time, ties to the node whose name
// sorts first) or, for manual, held with every later change to the entity
// until `tandem conflicts resolve`.
package engine
