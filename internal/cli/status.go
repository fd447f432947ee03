package cli

// What `tandem status` reads and prints per sync. The control database says
// how far each sync has consumed change_log, how its last run went and what
// is open; each node's change queue holds the changes captured there that
// the control database has not taken into change_log yet. A change is
// pending for a sync until the sync has consumed it, wherever it waits.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
)

// syncStatusQuery reads every sync of the config in one statement: $1..$5
// are parallel arrays of sync id, source node and table, target node and
// table. Pending changes are change_log rows of the side's node and table
// past the side's *_through (a range scan of change_log's primary key), less
// the sync's own echoes, which it skips rather than propagates.
const syncStatusQuery = `
WITH s AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
		AS s (sync_id, source_node, source_table, target_node, target_table)
)
SELECT s.sync_id,
       r.status, to_char(coalesce(r.completed_at, r.started_at), 'YYYY-MM-DD HH24:MI:SS TZ'),
       r.synced, r.created, r.updated, r.deleted, r.conflicts, r.errors,
       to_char(st.checked_at, 'YYYY-MM-DD HH24:MI:SS TZ'), st.last_error,
       src.n, now() - src.oldest, tgt.n, now() - tgt.oldest,
       (SELECT count(*) FROM tandem.sync_conflicts c WHERE c.sync_id = s.sync_id AND c.status = 'open'),
       (SELECT count(*) FROM tandem.sync_errors e WHERE e.sync_id = s.sync_id AND e.resolved_at IS NULL),
       st.initial_phase IS NOT NULL, coalesce(st.initial_done, 0), coalesce(st.initial_total, 0)
FROM s
LEFT JOIN tandem.sync_state st ON st.sync_id = s.sync_id
LEFT JOIN LATERAL (
	SELECT * FROM tandem.sync_runs r WHERE r.sync_id = s.sync_id
	ORDER BY r.started_at DESC, r.id DESC LIMIT 1
) r ON true
CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(l.captured_at) AS oldest FROM tandem.change_log l
	WHERE l.id > coalesce(st.source_through, 0) AND l.node = s.source_node AND l.table_name = s.source_table
	  AND l.origin IS DISTINCT FROM s.sync_id
) src
CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(l.captured_at) AS oldest FROM tandem.change_log l
	WHERE l.id > coalesce(st.target_through, 0) AND l.node = s.target_node AND l.table_name = s.target_table
	  AND l.origin IS DISTINCT FROM s.sync_id
) tgt`

// queuePositionsQuery reads how far the control database has taken each
// node's queue.
const queuePositionsQuery = `SELECT node, snapshot, window_to, after_queue_id FROM tandem.cursors`

// queuedQuery counts, on a node, the queued changes of the given tables ($1)
// that the control database has not taken, by table and origin. Taken are
// the rows visible in the cursor's snapshot ($2) and, while a pull is cut
// off mid-window, the rows of that window ($3) up to its last queue id
// ($4). Rows stay queued after they are taken while another consumer still
// needs them; they are in change_log already and must not count twice.
const queuedQuery = `
SELECT q.table_name, coalesce(q.origin, ''), count(*), now() - min(q.captured_at)
FROM tandem.change_queue q
WHERE q.table_name = ANY ($1)
  AND NOT pg_visible_in_snapshot(q.xid, $2::pg_snapshot)
  AND NOT coalesce(q.id <= $4 AND pg_visible_in_snapshot(q.xid, $3::pg_snapshot), false)
GROUP BY 1, 2`

// nothingTaken is the snapshot of a consumer that has taken nothing yet.
const nothingTaken = "1:1:"

// syncStatus is one sync as the control database knows it.
type syncStatus struct {
	id        string
	runStatus *string // of the latest sync_runs row; nil: never run
	runAt     *string // its completed_at, or started_at while it runs
	counts    [6]*int64
	checkedAt *string
	lastError *string
	pending   [2]int64          // change_log rows not consumed, source and target
	oldest    [2]*time.Duration // age of the oldest of them
	conflicts int64             // open
	errors    int64             // open
	// initial: its initial sync is under way, initialDone of initialTotal rows.
	initial                   bool
	initialDone, initialTotal int64
}

// queuePosition is a node's row in tandem.cursors: what of its queue the
// control database has taken.
type queuePosition struct {
	snapshot string
	windowTo *string
	after    int64
}

// queued is what waits in a node's change queue for one table and origin.
type queued struct {
	table, origin string
	rows          int64
	oldest        time.Duration
}

// controlStatus is what status reads from the control database.
type controlStatus struct {
	taken     map[string]cursorStatus // by node
	positions map[string]queuePosition
	syncs     []syncStatus // in config order
	instance  string       // the control database's id, which names wal nodes' slots
	err       error        // the sync table cannot be shown
}

// readControlStatus reads the control database's part of status. A failure
// is returned in err: the node table is still worth printing.
func readControlStatus(ctx context.Context, cfg *config.Config) controlStatus {
	st := controlStatus{taken: map[string]cursorStatus{}}
	pool, err := openPool(ctx, "control database", cfg.Control)
	if err != nil {
		st.err = err
		return st
	}
	defer pool.Close()
	wrap := func(err error) error {
		where := fmt.Sprintf("control database (%s)", config.RedactDSN(cfg.Control))
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "42P01" { // undefined_table
			return fmt.Errorf("%s: %w", where, err)
		}
		v, verr := control.Version(ctx, pool)
		latest, lerr := control.Latest()
		if verr != nil || lerr != nil || v >= latest {
			return fmt.Errorf("%s: %w (run `tandem migrate`?)", where, err)
		}
		return fmt.Errorf("%s: the control schema is at version %d, this tandem needs version %d: run `tandem migrate`", where, v, latest)
	}
	if st.instance, err = control.InstanceID(ctx, pool); err != nil {
		st.err = wrap(err)
		return st
	}
	if st.taken, err = readCursors(ctx, pool); err != nil {
		st.err = wrap(err)
		return st
	}
	if st.positions, err = readQueuePositions(ctx, pool); err != nil {
		st.err = wrap(err)
		return st
	}
	if st.syncs, err = readSyncStatus(ctx, pool, cfg.Syncs); err != nil {
		st.err = wrap(err)
	}
	return st
}

func readQueuePositions(ctx context.Context, pool *pgxpool.Pool) (map[string]queuePosition, error) {
	rows, err := pool.Query(ctx, queuePositionsQuery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]queuePosition{}
	for rows.Next() {
		var node string
		var p queuePosition
		if err := rows.Scan(&node, &p.snapshot, &p.windowTo, &p.after); err != nil {
			return nil, err
		}
		out[node] = p
	}
	return out, rows.Err()
}

func readSyncStatus(ctx context.Context, pool *pgxpool.Pool, syncs []*config.Sync) ([]syncStatus, error) {
	var ids, srcNodes, srcTables, tgtNodes, tgtTables []string
	for _, s := range syncs {
		ids = append(ids, s.ID)
		srcNodes = append(srcNodes, s.Source.Node)
		srcTables = append(srcTables, s.Source.Qualified())
		tgtNodes = append(tgtNodes, s.Target.Node)
		tgtTables = append(tgtTables, s.Target.Qualified())
	}
	rows, err := pool.Query(ctx, syncStatusQuery, ids, srcNodes, srcTables, tgtNodes, tgtTables)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := map[string]syncStatus{}
	for rows.Next() {
		var s syncStatus
		c := &s.counts
		if err := rows.Scan(&s.id, &s.runStatus, &s.runAt, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5],
			&s.checkedAt, &s.lastError, &s.pending[0], &s.oldest[0], &s.pending[1], &s.oldest[1],
			&s.conflicts, &s.errors, &s.initial, &s.initialDone, &s.initialTotal); err != nil {
			return nil, err
		}
		byID[s.id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]syncStatus, 0, len(syncs))
	for _, s := range syncs {
		out = append(out, byID[s.ID])
	}
	return out, nil
}

// nodeStatus is what status reads from one node.
type nodeStatus struct {
	queue  capture.QueueStats
	queued []queued    // not yet taken, for the tables syncs use
	slot   *slotStatus // a wal node's replication slot (nil: not read)
}

// readNodeStatus reads a node's queue statistics, when tables is not empty
// what of their changes the control database has not taken (pos), and when
// slot is not empty that replication slot. When the queue cannot be read
// (a node without capture schema), the slot comes back with the error.
func readNodeStatus(ctx context.Context, node *config.Node, tables []string, pos queuePosition, slot string) (*nodeStatus, error) {
	conn, err := connectNode(ctx, node)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var ns nodeStatus
	if slot != "" { // first: a node without capture schema still has a slot to show (or miss)
		if ns.slot, err = readSlotStatus(ctx, conn, node.Name, slot); err != nil {
			return nil, err
		}
	}
	if ns.queue, err = capture.ReadQueueStats(ctx, conn); err != nil {
		return &ns, fmt.Errorf("node %s: %w", node.Name, err)
	}
	if len(tables) == 0 {
		return &ns, nil
	}
	if pos.snapshot == "" {
		pos.snapshot = nothingTaken
	}
	rows, err := conn.Query(ctx, queuedQuery, tables, pos.snapshot, pos.windowTo, pos.after)
	if err != nil {
		return nil, fmt.Errorf("node %s: reading queued changes: %w", node.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var q queued
		if err := rows.Scan(&q.table, &q.origin, &q.rows, &q.oldest); err != nil {
			return nil, fmt.Errorf("node %s: reading queued changes: %w", node.Name, err)
		}
		ns.queued = append(ns.queued, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("node %s: reading queued changes: %w", node.Name, err)
	}
	return &ns, nil
}

// pendingFor sums what waits in the queue for table, less the echoes of
// sync self.
func (ns *nodeStatus) pendingFor(table, self string) (rows int64, oldest *time.Duration) {
	for _, q := range ns.queued {
		if q.table != table || q.origin == self {
			continue
		}
		rows += q.rows
		if oldest == nil || q.oldest > *oldest {
			oldest = &q.oldest
		}
	}
	return rows, oldest
}

// printSyncs prints the sync table, and on stderr a warning per sync whose
// last run failed. nodes holds nil for a node that could not be read.
func printSyncs(env Env, cfg *config.Config, syncs []syncStatus, nodes map[string]*nodeStatus) {
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tLAST RUN\tLAST COUNTS\tLAST CHECK\tPENDING SOURCE\tPENDING TARGET\tOLDEST PENDING\tOPEN CONFLICTS\tOPEN ERRORS")
	for i, s := range syncs {
		cs := cfg.Syncs[i]
		var pending [2]string
		var oldest []*time.Duration
		unknown := false
		for side, e := range []config.Endpoint{cs.Source, cs.Target} {
			ns := nodes[e.Node]
			if ns == nil {
				pending[side], unknown = "unknown", true
				continue
			}
			rows, age := ns.pendingFor(e.Qualified(), cs.ID)
			pending[side] = strconv.FormatInt(s.pending[side]+rows, 10)
			oldest = append(oldest, s.oldest[side], age)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", cs.ID, s.lastRun(), s.lastCounts(), orText(s.checkedAt, "never"),
			pending[0], pending[1], oldestText(oldest, unknown), s.conflicts, s.errors)
	}
	tw.Flush()
	for i, s := range syncs {
		if s.initial {
			fmt.Fprintf(env.Stderr, "sync %s: initial sync under way: %d of %d rows (%s); changes wait until it is done\n",
				cfg.Syncs[i].ID, s.initialDone, s.initialTotal, percent(s.initialDone, s.initialTotal))
		}
	}
	for i, s := range syncs {
		if s.lastError != nil && *s.lastError != "" {
			fmt.Fprintf(env.Stderr, "WARNING: sync %s: last run failed: %s\n", cfg.Syncs[i].ID, *s.lastError)
		}
	}
}

func (s syncStatus) lastRun() string {
	switch {
	case s.runStatus == nil:
		return "never"
	case *s.runStatus == "running":
		return "running since " + orText(s.runAt, "?")
	default:
		return *s.runStatus + " " + orText(s.runAt, "?")
	}
}

func (s syncStatus) lastCounts() string {
	if s.runStatus == nil {
		return "-"
	}
	var n [6]int64
	for i, c := range s.counts {
		if c != nil {
			n[i] = *c
		}
	}
	return fmt.Sprintf("%d synced: %d created, %d updated, %d deleted; %d conflicts, %d errors", n[0], n[1], n[2], n[3], n[4], n[5])
}

func orText(s *string, none string) string {
	if s == nil {
		return none
	}
	return *s
}

// oldestText is the largest of ages; "-" when nothing is pending.
func oldestText(ages []*time.Duration, unknown bool) string {
	var max *time.Duration
	for _, a := range ages {
		if a != nil && (max == nil || *a > *max) {
			max = a
		}
	}
	switch {
	case max != nil:
		return max.Round(time.Second).String()
	case unknown:
		return "unknown"
	}
	return "-"
}

// statusError is status's error: what could not be read, of the control
// database and of the nodes (nil when everything was read).
func statusError(ctl error, nodes []string) error {
	var errs []error
	if ctl != nil {
		errs = append(errs, fmt.Errorf("could not read sync status: %w", ctl))
	}
	if len(nodes) > 0 {
		errs = append(errs, fmt.Errorf("could not read capture status:\n  %s", strings.Join(nodes, "\n  ")))
	}
	return errors.Join(errs...)
}
