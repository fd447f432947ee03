package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// emptySnapshot sees no transaction at all: the cursor of a consumer that
// has taken nothing yet.
const emptySnapshot = "1:1:"

// DefaultBatchSize bounds the rows one control transaction takes.
const DefaultBatchSize = 20000

// Reader moves the changes captured on one node into the control
// database's tandem.change_log. One reader per node and control database
// may run at a time; a second one fails its batch instead of duplicating.
type Reader struct {
	Node     string        // node name, as in tandem.yaml
	NodeDB   *pgxpool.Pool // the node
	Control  *pgxpool.Pool // the control database
	Consumer string        // this control database's consumer name on the node
	// BatchSize bounds the rows per control transaction (DefaultBatchSize if 0).
	BatchSize int
	// MaxQueueRows and MaxQueueAge are the node's queue_limit: past either,
	// a pull logs an error, at most once a minute while it stays past
	// (zero: no limit).
	MaxQueueRows int64
	MaxQueueAge  time.Duration
	Logger       *slog.Logger

	registered bool      // consumer and cursor rows exist
	overLogged time.Time // when an over-limit error was last logged
}

// overLimitEvery is how often a queue that stays over its limit is
// logged again.
const overLimitEvery = time.Minute

// PullResult says what one [Reader.Pull] did.
type PullResult struct {
	Rows    int64 // changes moved into change_log
	Batches int   // control transactions that moved rows
	Pruned  int64 // queue rows deleted on the node
	// InFlight counts transactions in progress on the node when the window
	// closed: their changes (if any) come in a later pull.
	InFlight int
	// Cut: a [Reader.PullUpTo] stopped at its limit; changes committed
	// before the call may be left for the next pull, which goes on from
	// where this one stopped.
	Cut bool
	// Opened: the pull took a new snapshot of the node, to take what
	// committed before it, after finishing the window an earlier pull
	// left open (if any). Completed: it finished a window, all of it.
	Opened, Completed bool
}

// cursor is a node's row in tandem.cursors.
type cursor struct {
	Snapshot string  // everything visible in it has been taken
	WindowTo *string // the window being taken, if one is open
	After    int64   // last queue id of the open window already taken
}

// ErrCursorMoved means another reader advanced the cursor concurrently.
var ErrCursorMoved = errors.New("the cursor moved underneath this reader: is another tandem reading this node into the same control database?")

// Pull moves every change committed on the node before the call into
// change_log, in batches, and prunes what every consumer has taken.
func (r *Reader) Pull(ctx context.Context) (PullResult, error) {
	return r.PullUpTo(ctx, 0, "")
}

// PullUpTo is Pull, stopping after the batch that brings the rows moved to
// max or more (0: no limit), so that a consumer can start on a backlog's
// first rows while the rest waits. It never stops while the queue holds a
// row whose origin is origin (a sync's own write) not yet taken, committed
// or not, in the open window or after it: a change the queue holds before
// one of the sync's own writes is never in change_log without it. A pull
// that stopped reports Cut.
func (r *Reader) PullUpTo(ctx context.Context, max int64, origin string) (PullResult, error) {
	var res PullResult
	if !r.registered {
		if err := r.register(ctx); err != nil {
			return res, err
		}
		r.registered = true
	}
	// A pull cut off (its context cancelled) may still commit a batch after
	// it returned: its COMMIT was on its way. This pull then finds the
	// cursor moved, and starts again from where that batch left it.
	for attempt := 1; ; attempt++ {
		res, err := r.pull(ctx, max, origin)
		if !errors.Is(err, ErrCursorMoved) || attempt == 3 {
			return res, err
		}
		r.logger().Warn("cursor moved while pulling; pulling again", "node", r.Node, "attempt", attempt)
	}
}

// pull moves what it may (pullWindows), then checks the queue's limits:
// also after a pull that stopped part way, as in a backlog, when a limit
// matters most.
func (r *Reader) pull(ctx context.Context, max int64, origin string) (PullResult, error) {
	res, err := r.pullWindows(ctx, max, origin)
	if err == nil {
		r.checkLimits(ctx)
	}
	return res, err
}

func (r *Reader) pullWindows(ctx context.Context, max int64, origin string) (PullResult, error) {
	res := PullResult{}
	lim := limit{max: max, origin: origin}
	// Arm NOTIFY before reading: a change committed after this point
	// notifies; one committed before it is visible to the read below.
	if _, err := r.NodeDB.Exec(ctx, "SELECT setval('tandem.notify_seq', 1, false)"); err != nil {
		return res, r.wrap("re-arming notify", err)
	}
	cur, err := r.loadCursor(ctx)
	if err != nil {
		return res, err
	}
	if cur.WindowTo != nil {
		// A pull cut off mid-window (or stopped at its limit) left it open:
		// finish it first.
		if err := r.takeWindow(ctx, cur, &res, lim); err != nil || res.Cut {
			return res, err
		}
		cur = cursor{Snapshot: *cur.WindowTo}
	}
	var to string
	if err := r.NodeDB.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&to); err != nil {
		return res, r.wrap("taking snapshot", err)
	}
	if to != cur.Snapshot { // else no transaction has ended since the last window
		cur.WindowTo, res.Opened = &to, true
		if err := r.takeWindow(ctx, cur, &res, lim); err != nil || res.Cut {
			return res, err
		}
	}
	return res, nil
}

// limit is where a PullUpTo may stop: once max rows have moved (0: never),
// if no row of origin waits.
type limit struct {
	max    int64
	origin string
}

// ownLeft reports whether the queue holds a row of origin that a pull has
// yet to take, cur being where the pull stands: any not visible in the
// taken snapshot and not among the open window's rows taken (rows of
// transactions still in progress count too: taken or not, they are not
// the pull's to leave behind).
func (r *Reader) ownLeft(ctx context.Context, cur cursor, origin string) (bool, error) {
	var left bool
	err := r.NodeDB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tandem.change_queue q
		WHERE q.origin = $1 AND NOT pg_visible_in_snapshot(q.xid, $2::pg_snapshot)
		  AND NOT (pg_visible_in_snapshot(q.xid, $3::pg_snapshot) AND q.id <= $4))`,
		origin, cur.Snapshot, *cur.WindowTo, cur.After).Scan(&left)
	if err != nil {
		return false, r.wrap("looking for the sync's own changes left in the queue", err)
	}
	return left, nil
}

// takeWindow moves the rest of the open window in cur, batch by batch, then
// acknowledges it on the node and, if it took anything, prunes. Past lim,
// it stops after a batch (res.Cut), leaving the window open.
func (r *Reader) takeWindow(ctx context.Context, cur cursor, res *PullResult, lim limit) error {
	var taken int64
	for {
		n, lastID, err := r.moveBatch(ctx, cur)
		if err != nil {
			return err
		}
		taken += n
		res.Rows += n
		if n > 0 {
			res.Batches++
		}
		if n < int64(r.batchSize()) {
			break
		}
		cur.After = lastID
		if lim.max > 0 && res.Rows >= lim.max {
			own := false
			if lim.origin != "" {
				if own, err = r.ownLeft(ctx, cur, lim.origin); err != nil {
					return err
				}
			}
			if !own {
				res.Cut = true
				return nil
			}
			lim.max = 0 // the sync's own rows wait: take everything
		}
	}
	pruned, inflight, err := r.finishWindow(ctx, *cur.WindowTo, taken > 0)
	if err != nil {
		return err
	}
	res.Completed = true
	res.Pruned += pruned
	res.InFlight = inflight
	return nil
}

// checkLimits logs an error for every queue limit the node exceeds (at
// most once every overLimitEvery). The queue grows when a consumer stops
// reading (this one was cut off, or another registered consumer is gone);
// capture itself never stops, nor does a pull whose check fails (it has
// moved its rows: a warning says the check failed).
func (r *Reader) checkLimits(ctx context.Context) {
	if r.MaxQueueRows <= 0 && r.MaxQueueAge <= 0 || time.Since(r.overLogged) < overLimitEvery {
		return
	}
	s, err := ReadQueueStats(ctx, r.NodeDB)
	if err != nil {
		r.logger().Warn("checking queue limits failed", "node", r.Node, "err", err)
		return
	}
	msgs := s.OverLimit(r.MaxQueueRows, r.MaxQueueAge)
	for _, msg := range msgs {
		r.logger().Error(msg, "node", r.Node, "consumers", s.Consumers)
	}
	if len(msgs) > 0 {
		r.overLogged = time.Now()
	}
}

func (r *Reader) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Reader) wrap(doing string, err error) error {
	return fmt.Errorf("node %s: %s: %w", r.Node, doing, err)
}

func (r *Reader) batchSize() int {
	if r.BatchSize > 0 {
		return r.BatchSize
	}
	return DefaultBatchSize
}

// register makes sure the consumer and cursor rows exist. The consumer row
// must exist before the first read: from then on no other consumer's
// pruning removes a change this one has not taken.
func (r *Reader) register(ctx context.Context) error {
	_, err := r.NodeDB.Exec(ctx, `INSERT INTO tandem.consumers (name, snapshot) VALUES ($1, $2::pg_snapshot)
		ON CONFLICT (name) DO NOTHING`, r.Consumer, emptySnapshot)
	if err != nil {
		if isUndefinedTable(err) {
			return r.wrap("registering consumer", ErrNotInstalled)
		}
		return r.wrap("registering consumer", err)
	}
	_, err = r.Control.Exec(ctx, `INSERT INTO tandem.cursors (node, snapshot) VALUES ($1, $2)
		ON CONFLICT (node) DO NOTHING`, r.Node, emptySnapshot)
	if err != nil {
		return fmt.Errorf("control: creating cursor of node %s: %w", r.Node, err)
	}
	return nil
}

const cursorQuery = "SELECT snapshot, window_to, after_queue_id FROM tandem.cursors WHERE node = $1"

func (r *Reader) loadCursor(ctx context.Context) (cursor, error) {
	return r.scanCursor(r.Control.QueryRow(ctx, cursorQuery, r.Node), "reading")
}

func (r *Reader) scanCursor(row pgx.Row, doing string) (cursor, error) {
	var c cursor
	if err := row.Scan(&c.Snapshot, &c.WindowTo, &c.After); err != nil {
		return c, fmt.Errorf("control: %s cursor of node %s: %w", doing, r.Node, err)
	}
	return c, nil
}

// windowQuery selects one batch of a window. COPY takes no parameters, so the
// window comes in through transaction-local settings set with parameters.
const windowQuery = `COPY (
SELECT q.id, current_setting('tandem.read_node'), q.table_name, q.op, q.keys, q.old, q.new, q.xid, q.captured_at, q.origin
FROM tandem.change_queue q
WHERE q.xid >= pg_snapshot_xmin(current_setting('tandem.read_from')::pg_snapshot)
  AND q.xid <  pg_snapshot_xmax(current_setting('tandem.read_to')::pg_snapshot)
  AND q.id > current_setting('tandem.read_after')::bigint
  AND pg_visible_in_snapshot(q.xid, current_setting('tandem.read_to')::pg_snapshot)
  AND NOT pg_visible_in_snapshot(q.xid, current_setting('tandem.read_from')::pg_snapshot)
ORDER BY q.id
LIMIT current_setting('tandem.read_limit')::bigint
) TO STDOUT`

const changeLogCopy = `COPY tandem.change_log (queue_id, node, table_name, op, keys, old, new, xid, captured_at, origin) FROM STDIN`

// moveBatch streams one batch of the window from the node into change_log
// and advances the cursor in the same control transaction: past the batch's
// last queue id, or, for a short batch, past the whole window.
func (r *Reader) moveBatch(ctx context.Context, cur cursor) (n, lastID int64, err error) {
	ctl, err := r.Control.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("control: beginning batch for node %s: %w", r.Node, err)
	}
	defer ctl.Rollback(ctx)
	now, err := r.scanCursor(ctl.QueryRow(ctx, cursorQuery+" FOR UPDATE", r.Node), "locking")
	if err != nil {
		return 0, 0, err
	}
	if now.Snapshot != cur.Snapshot || now.After != cur.After || (now.WindowTo != nil && *now.WindowTo != *cur.WindowTo) {
		return 0, 0, r.wrap("moving changes", ErrCursorMoved)
	}

	node, err := r.NodeDB.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, 0, r.wrap("beginning read", err)
	}
	defer node.Rollback(ctx)
	limit := r.batchSize()
	_, err = node.Exec(ctx, `SELECT set_config('tandem.read_node', $1, true), set_config('tandem.read_from', $2, true),
		set_config('tandem.read_to', $3, true), set_config('tandem.read_after', $4, true),
		set_config('tandem.read_limit', $5, true), set_config('DateStyle', 'ISO', true)`,
		r.Node, cur.Snapshot, *cur.WindowTo, strconv.FormatInt(cur.After, 10), strconv.Itoa(limit))
	if err != nil {
		return 0, 0, r.wrap("setting read window", err)
	}

	counter, err := pipeCopy(ctx, node, ctl)
	if err != nil {
		return 0, 0, r.wrap("copying changes into the control database", err)
	}
	n = counter.rows
	if n < int64(limit) {
		_, err = ctl.Exec(ctx, `UPDATE tandem.cursors SET snapshot = $2, window_to = NULL, after_queue_id = 0,
			rows_taken = rows_taken + $3, updated_at = now() WHERE node = $1`, r.Node, *cur.WindowTo, n)
	} else {
		_, err = ctl.Exec(ctx, `UPDATE tandem.cursors SET window_to = $2, after_queue_id = $3,
			rows_taken = rows_taken + $4, updated_at = now() WHERE node = $1`, r.Node, *cur.WindowTo, counter.lastID, n)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("control: advancing cursor of node %s: %w", r.Node, err)
	}
	if err := ctl.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("control: committing batch of node %s: %w", r.Node, err)
	}
	return n, counter.lastID, nil
}

// errCopyEnded ends the pipe once the control side's COPY has returned.
var errCopyEnded = errors.New("control COPY ended")

// pipeCopy runs COPY TO on the node and COPY FROM on the control database at
// once, joined by a pipe: rows stream through without being decoded.
func pipeCopy(ctx context.Context, node, ctl pgx.Tx) (*copyCounter, error) {
	pr, pw := io.Pipe()
	// CopyTo writes one message per row; buffered, COPY FROM gets large
	// chunks instead of one network write per row.
	buf := bufio.NewWriterSize(pw, 256<<10)
	counter := &copyCounter{w: buf}
	readErr := make(chan error, 1)
	go func() {
		_, err := node.Conn().PgConn().CopyTo(ctx, counter, windowQuery)
		if err == nil {
			err = buf.Flush()
		}
		pw.CloseWithError(err) // nil closes with io.EOF
		readErr <- err
	}()
	_, err := ctl.Conn().PgConn().CopyFrom(ctx, pr, changeLogCopy)
	pr.CloseWithError(errCopyEnded) // unblocks the writer if COPY FROM failed
	rerr := <-readErr
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr // cut off: whichever side noticed first, the cause is the context
	}
	if rerr != nil && !errors.Is(rerr, errCopyEnded) {
		return nil, fmt.Errorf("reading queue: %w", rerr)
	}
	if err != nil {
		return nil, fmt.Errorf("writing change_log: %w", err)
	}
	if counter.err != nil {
		return nil, counter.err
	}
	return counter, nil
}

// copyCounter passes COPY text rows through, counting them and noting the
// first column (the queue id) of the last one. COPY text escapes newlines
// in values, so each row is exactly one line.
type copyCounter struct {
	w         io.Writer
	rows      int64
	lastID    int64
	inID      bool // reading the first field of a line
	id        int64
	midLine   bool
	err       error
	sawDigits bool
}

func (c *copyCounter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); {
		if !c.midLine {
			c.midLine, c.inID, c.id, c.sawDigits = true, true, 0, false
		}
		if c.inID {
			b := p[i]
			i++
			switch {
			case b >= '0' && b <= '9':
				c.id = c.id*10 + int64(b-'0')
				c.sawDigits = true
			case b == '\t' && c.sawDigits:
				c.inID = false
				c.lastID = c.id
			default:
				c.err = fmt.Errorf("unexpected COPY row from the queue (byte %q in the id column)", b)
				return 0, c.err
			}
			continue
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		c.rows++
		c.midLine = false
	}
	return c.w.Write(p)
}

// finishWindow acknowledges the window on the node and, when the window took
// rows, prunes the queue rows that every consumer has taken (a window that
// took nothing made nothing prunable: no DELETE on every idle poll). It
// returns the rows pruned and how many transactions were in flight when the
// window closed.
func (r *Reader) finishWindow(ctx context.Context, to string, prune bool) (pruned int64, inflight int, err error) {
	// An upsert: a consumer row deleted by hand comes back.
	err = r.NodeDB.QueryRow(ctx, `INSERT INTO tandem.consumers AS c (name, snapshot) VALUES ($1, $2::pg_snapshot)
		ON CONFLICT (name) DO UPDATE SET snapshot = excluded.snapshot, acked_at = now()
		RETURNING (SELECT count(*) FROM pg_snapshot_xip($2::pg_snapshot))`, r.Consumer, to).Scan(&inflight)
	if err != nil {
		return 0, 0, r.wrap("acknowledging taken changes", err)
	}
	if !prune {
		return 0, inflight, nil
	}
	pruned, err = Prune(ctx, r.NodeDB)
	if err != nil {
		return 0, 0, r.wrap("pruning queue", err)
	}
	if pruned > 0 {
		r.logger().Debug("pruned change queue", "node", r.Node, "rows", pruned)
	}
	return pruned, inflight, nil
}

// pruneChunk bounds one DELETE so pruning a large backlog is many short
// transactions.
const pruneChunk = 50000

// Prune deletes queue rows every registered consumer has taken: those whose
// transaction is visible in every consumer's snapshot. (Not merely below
// every xmin: xids are cluster-wide, so one long transaction anywhere on the
// server would hold that back.) With no consumer, nothing is pruned.
func Prune(ctx context.Context, q Querier) (int64, error) {
	var total int64
	for {
		// ARRAY(...): the DELETE finds its rows by primary key, and the
		// subquery walks the key in order, skipping index entries already
		// marked dead; a seq scan would revisit every dead tuple not yet
		// vacuumed, again on every chunk.
		tag, err := q.Exec(ctx, `DELETE FROM tandem.change_queue WHERE id = ANY (ARRAY(
			SELECT q.id FROM tandem.change_queue q
			WHERE q.xid < (SELECT min(pg_snapshot_xmax(c.snapshot)) FROM tandem.consumers c)
			  AND NOT EXISTS (SELECT 1 FROM tandem.consumers c WHERE NOT pg_visible_in_snapshot(q.xid, c.snapshot))
			ORDER BY q.id LIMIT $1))`, pruneChunk)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneChunk {
			return total, nil
		}
	}
}
