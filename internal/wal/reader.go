// Package wal captures a node's changes from its write-ahead log (capture:
// wal): a logical replication slot decoded with pgoutput feeds the control
// database's tandem.change_log with the same rows trigger capture gives,
// so everything downstream works unchanged.
//
// # Nothing lost, nothing twice
//
// Rows go to change_log in control transactions that end on a node
// transaction's boundary, and each writes the node's cursor (the LSN the
// stream has been written up to) with its rows. Only after that commit is
// the slot's confirmed position advanced to the cursor. A reader that
// restarts asks the slot to start at the cursor, and the walsender skips
// every transaction that committed before it (the slot may lag the cursor
// by the batches a crash kept it from confirming), so a crash at any point
// neither loses nor repeats a change.
//
// # Echoes
//
// tandem's own writes to a wal node start their transaction with a
// transactional logical message (prefix [capture.OriginPrefix], content
// the sync's id): the rows of that transaction get the sync as origin, as
// trigger capture gives them the tandem.origin setting.
//
// # Caught up
//
// A run must see every change committed before it started (the echoes of
// its last window among them). Pull writes a non-transactional logical
// message with a token of its own into the node's WAL and waits until the
// stream has received it and written everything before it.
//
// # Quiet tables
//
// The walsender reads every WAL record of the database, and when it has
// sent all it has and the confirmed position lags, it sends a keepalive
// carrying how far it has read. A reader with nothing pending confirms
// that position, so a slot whose tables go unwritten does not pin WAL.
package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
)

// Reader streams one wal node's slot into the control database. The stream
// runs in a goroutine of its own from the first [Reader.Pull] until
// [Reader.Close].
type Reader struct {
	Node    string
	NodeDB  *pgxpool.Pool // the node, for its WAL position and catalog
	Control *pgxpool.Pool
	Slot    string
	// Keys gives the configured key of a table (schema.name); a table
	// without one is keyed by its primary key.
	Keys map[string][]string
	// MaxRetained caps the WAL (bytes) the slot may hold back; past it every
	// Pull fails, loudly (0: no cap).
	MaxRetained int64
	Logger      *slog.Logger
	// Changed, if set, is called (from the stream's goroutine) after rows
	// were written to change_log.
	Changed func()

	mu       sync.Mutex
	progress chan struct{}   // closed and replaced whenever written or lastErr changes
	written  pglogrepl.LSN   // everything in the stream up to here is in change_log
	rows     int64           // rows written since the reader started
	marks    map[string]bool // the marks Pulls wait for: true once received, all before them written
	lastErr  error           // the stream's last failure, nil once it streams again
	fatal    bool            // lastErr will not go away by retrying
	cancel   context.CancelFunc
	done     chan struct{}
}

// pullPrefix is the prefix of the non-transactional logical message with
// which Pull marks the WAL.
const pullPrefix = "tandem.pull"

// PullWait bounds how long [Reader.Pull] waits for the stream to catch up
// while the stream is failing.
const PullWait = 30 * time.Second

// Pull returns once every change committed on the node before the call is
// in change_log, with how many rows the stream wrote meanwhile.
func (r *Reader) Pull(ctx context.Context) (capture.PullResult, error) {
	r.start()
	// A mark in the WAL after every commit acknowledged before this call:
	// once the stream has received it, it has received them all. (Waiting
	// for a WAL position instead could wait for good: the walsender's read
	// position need not land exactly on the server's flush position.)
	token := strconv.FormatUint(rand.Uint64(), 36)
	r.mu.Lock()
	if r.marks == nil {
		r.marks = map[string]bool{}
	}
	r.marks[token] = false
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.marks, token)
		r.mu.Unlock()
	}()
	var target pglogrepl.LSN
	var retained *int64
	if err := r.NodeDB.QueryRow(ctx, `SELECT pg_logical_emit_message(false, '`+pullPrefix+`', $2),
		(SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1)`, r.Slot, token).
		Scan(&target, &retained); err != nil {
		return capture.PullResult{}, r.wrap("marking the WAL position", err)
	}
	if retained == nil {
		return capture.PullResult{}, fmt.Errorf("node %s: replication slot %s does not exist (dropped?): run `tandem install %s` to create it; changes made since it was dropped are not captured", r.Node, r.Slot, r.Node)
	}
	if r.MaxRetained > 0 && *retained > r.MaxRetained {
		err := fmt.Errorf("node %s: replication slot %s holds back %d MB of WAL, over max_retained_wal (%d MB): is the stream stuck or this node's syncs failing? (see `tandem status`)",
			r.Node, r.Slot, *retained>>20, r.MaxRetained>>20)
		r.logger().Error("retained WAL over its cap", "node", r.Node, "slot", r.Slot, "retained_bytes", *retained, "max_retained_wal", r.MaxRetained)
		return capture.PullResult{}, err
	}
	r.mu.Lock()
	before := r.rows
	r.mu.Unlock()
	failingSince := time.Time{}
	for {
		r.mu.Lock()
		written, rows, err, fatal, progress, seen := r.written, r.rows, r.lastErr, r.fatal, r.progress, r.marks[token]
		r.mu.Unlock()
		if seen || written >= target {
			return capture.PullResult{Rows: rows - before}, nil
		}
		if err != nil {
			if fatal {
				return capture.PullResult{}, err
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > PullWait {
				return capture.PullResult{}, fmt.Errorf("node %s: the WAL stream is %s behind and failing: %w", r.Node, time.Since(failingSince).Round(time.Second), err)
			}
		} else {
			failingSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return capture.PullResult{}, ctx.Err()
		case <-progress:
		case <-time.After(time.Second):
		}
	}
}

// Close stops the stream and waits for it. What it has written stays.
func (r *Reader) Close() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (r *Reader) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done, r.progress = cancel, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		r.loop(ctx)
	}()
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

// advance records progress and wakes Pull.
func (r *Reader) advance(written pglogrepl.LSN, rows int64, err error, fatal bool) {
	r.mu.Lock()
	if written > r.written {
		r.written = written
	}
	r.rows += rows
	r.lastErr, r.fatal = err, fatal
	close(r.progress)
	r.progress = make(chan struct{})
	r.mu.Unlock()
	if rows > 0 && r.Changed != nil {
		r.Changed()
	}
}

// loop streams until ctx ends, reconnecting with backoff.
func (r *Reader) loop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		s := &stream{r: r, dec: newDecoder(), rels: map[uint32]*relation{}}
		err := s.run(ctx)
		if ctx.Err() != nil {
			return
		}
		if s.streamed {
			backoff = 100 * time.Millisecond
		}
		fatal := isFatal(err)
		r.advance(0, 0, err, fatal)
		r.logger().Error("WAL stream failed; reconnecting", "node", r.Node, "slot", r.Slot, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// isFatal reports failures that retrying does not mend: the slot is gone
// (dropped underneath) or the publication is missing.
func isFatal(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "42704" // undefined_object
}

// Status timing: the walsender drops a client silent for wal_sender_timeout
// (60 s by default); a pending batch is written within flushDelay even if
// the walsender never pauses, and when it pauses, at once unless the last
// batch was written less than flushGap ago. A steady trickle of commits is
// then written flushGap's worth at a time, not one control transaction per
// node commit, while a lone commit after a quiet spell goes at once.
const (
	statusInterval = 10 * time.Second
	flushDelay     = 20 * time.Millisecond
	flushGap       = 3 * time.Millisecond
	chunkRows      = 5000  // rows buffered before a COPY into the open control transaction
	commitRows     = 50000 // rows after which the control transaction commits at the next node commit
)

// stream is one replication connection's life.
type stream struct {
	r        *Reader
	conn     *pgconn.PgConn
	dec      *decoder
	rels     map[uint32]*relation
	streamed bool // received something: the connection worked

	resume   pglogrepl.LSN // the cursor when the stream started: the walsender skips commits before it
	reported pglogrepl.LSN // last position confirmed to the server

	// The node transaction being received.
	inTxn  bool
	at     time.Time
	origin *string
	// xid is its full (xid8) transaction id; before the first, the node's
	// next one. pgoutput sends 32-bit ids: each is widened against the last
	// (widenXid).
	xid uint64

	// The control transaction being filled, if any.
	tx        pgx.Tx
	buf       [][]any // rows not yet copied into tx
	txRows    int64
	txStarted time.Time
	paused    bool          // the walsender said it has sent all it has (keepalive) since tx began
	lastFlush time.Time     // when the last control transaction committed
	txEnd     pglogrepl.LSN // end of the last node transaction in tx
}

func (s *stream) run(ctx context.Context) error {
	r := s.r
	defer func() {
		if s.tx != nil {
			s.tx.Rollback(context.Background())
		}
	}()
	if err := s.loadCursor(ctx); err != nil {
		return err
	}
	if err := r.NodeDB.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())").Scan(&s.xid); err != nil {
		return r.wrap("reading the next transaction id", err)
	}
	cfg := r.NodeDB.Config().ConnConfig.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	// Values come in their text form: make it the form this package parses.
	cfg.RuntimeParams["DateStyle"] = "ISO"
	cfg.RuntimeParams["TimeZone"] = capture.RenderTimeZone
	cfg.RuntimeParams["extra_float_digits"] = capture.RenderFloatDigits
	cfg.RuntimeParams["IntervalStyle"] = capture.RenderIntervalStyle
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return r.wrap("opening a replication connection", err)
	}
	defer conn.Close(context.Background())
	s.conn = conn
	err = pglogrepl.StartReplication(ctx, conn, r.Slot, s.resume, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", capture.Publication), "messages 'true'"},
	})
	if err != nil {
		return r.wrap(fmt.Sprintf("starting replication from slot %s", r.Slot), err)
	}
	r.logger().Debug("WAL stream started", "node", r.Node, "slot", r.Slot, "from", s.resume)
	nextStatus := time.Now().Add(statusInterval)
	for {
		deadline := nextStatus
		if s.tx != nil && !s.inTxn {
			deadline = s.txStarted.Add(flushDelay)
			if s.paused {
				deadline = s.lastFlush.Add(flushGap)
			}
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !pgconn.Timeout(err) {
				return r.wrap("receiving from the WAL stream", err)
			}
			if err := s.commit(ctx); err != nil {
				return err
			}
			if time.Now().After(nextStatus) {
				if err := s.status(false); err != nil {
					return err
				}
				nextStatus = time.Now().Add(statusInterval)
			}
			continue
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			s.streamed = true
			if err := s.handle(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return r.wrap("WAL stream", pgconn.ErrorResponseToPgError(m))
		}
	}
}

// loadCursor reads (creating it if need be) the node's cursor.
func (s *stream) loadCursor(ctx context.Context) error {
	r := s.r
	_, err := r.Control.Exec(ctx, `INSERT INTO tandem.cursors (node, snapshot) VALUES ($1, '') ON CONFLICT (node) DO NOTHING`, r.Node)
	if err != nil {
		return fmt.Errorf("control: creating cursor of node %s (run `tandem migrate`?): %w", r.Node, err)
	}
	var lsn *pglogrepl.LSN
	if err := r.Control.QueryRow(ctx, `SELECT lsn FROM tandem.cursors WHERE node = $1`, r.Node).Scan(&lsn); err != nil {
		return fmt.Errorf("control: reading cursor of node %s (run `tandem migrate`?): %w", r.Node, err)
	}
	if lsn != nil {
		s.resume = *lsn
		r.advance(*lsn, 0, nil, false)
	}
	return nil
}

func (s *stream) handle(ctx context.Context, data []byte) error {
	r := s.r
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return r.wrap("parsing keepalive", err)
		}
		if s.inTxn {
			if k.ReplyRequested {
				return s.status(false)
			}
			return nil
		}
		// The walsender has sent everything before ServerWALEnd: write what
		// is pending (now, or once flushGap has passed since the last
		// write), then all of it is done.
		if s.tx != nil {
			s.paused = true
			if time.Since(s.lastFlush) < flushGap {
				return nil // the receive deadline writes it
			}
		}
		if err := s.commit(ctx); err != nil {
			return err
		}
		if k.ServerWALEnd > s.reported {
			// Confirmed to the server, but not written to the cursor: that
			// would be a control write per keepalive. A restart from the
			// older cursor loses nothing, as nothing of ours lies between.
			r.advance(k.ServerWALEnd, 0, nil, false)
			return s.status(false)
		}
		r.advance(0, 0, nil, false)
		if k.ReplyRequested {
			return s.status(false)
		}
		return nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return r.wrap("parsing WAL data", err)
		}
		return s.message(ctx, x.WALData)
	}
	return nil
}

// status confirms to the server what is written in control.
func (s *stream) status(replyRequested bool) error {
	s.r.mu.Lock()
	pos := s.r.written
	s.r.mu.Unlock()
	if pos < s.reported {
		pos = s.reported
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: replyRequested,
	})
	if err != nil {
		return s.r.wrap("confirming the WAL position", err)
	}
	s.reported = pos
	return nil
}

func (s *stream) message(ctx context.Context, data []byte) error {
	r := s.r
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return r.wrap("decoding pgoutput", err)
	}
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		s.inTxn, s.at, s.origin = true, m.CommitTime, nil
		s.xid = widenXid(s.xid, m.Xid)
	case *pglogrepl.LogicalDecodingMessage:
		switch {
		case m.Transactional && m.Prefix == capture.OriginPrefix:
			o := string(m.Content)
			s.origin = &o
		case !m.Transactional && m.Prefix == pullPrefix && !s.inTxn:
			// A Pull's mark: everything committed before it has been
			// received. Written now, it is all in change_log.
			if err := s.commit(ctx); err != nil {
				return err
			}
			r.mu.Lock()
			if _, waiting := r.marks[string(m.Content)]; waiting { // else another reader's, or a Pull given up
				r.marks[string(m.Content)] = true
			}
			r.mu.Unlock()
			r.advance(0, 0, nil, false)
		}
	case *pglogrepl.RelationMessage:
		return s.relation(ctx, m)
	case *pglogrepl.InsertMessage:
		return s.change(ctx, m.RelationID, func(rel *relation) ([]row, error) { return s.dec.insert(rel, m) })
	case *pglogrepl.UpdateMessage:
		return s.change(ctx, m.RelationID, func(rel *relation) ([]row, error) { return s.dec.update(rel, m) })
	case *pglogrepl.DeleteMessage:
		return s.change(ctx, m.RelationID, func(rel *relation) ([]row, error) { return s.dec.delete(rel, m) })
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err := s.change(ctx, id, func(rel *relation) ([]row, error) {
				return []row{{table: rel.table, op: "truncate"}}, nil
			}); err != nil {
				return err
			}
		}
	case *pglogrepl.CommitMessage:
		s.inTxn = false
		if s.tx == nil {
			// A transaction with nothing of ours (its message only): done.
			return nil
		}
		s.txEnd = m.TransactionEndLSN
		if s.txRows >= commitRows {
			return s.commit(ctx)
		}
	}
	return nil
}

// relation caches a table's columns and finds its key.
func (s *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	rel := &relation{table: m.Namespace + "." + m.RelationName, cols: m.Columns}
	key, ok := s.r.Keys[rel.table]
	if !ok || len(key) == 0 {
		var err error
		if key, err = s.primaryKey(ctx, m.Namespace, m.RelationName); err != nil {
			return err
		}
	}
	if len(key) == 0 {
		rel.keyErr = fmt.Errorf("node %s: table %s has no primary key and no sync gives it a key", s.r.Node, rel.table)
	} else if rel.key, rel.keyErr = keyIndexes(m.Columns, key); rel.keyErr != nil {
		rel.keyErr = fmt.Errorf("node %s: table %s: %w", s.r.Node, rel.table, rel.keyErr)
	}
	s.rels[m.RelationID] = rel
	return nil
}

func (s *stream) primaryKey(ctx context.Context, schema, name string) ([]string, error) {
	rows, err := s.r.NodeDB.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, pgx.Identifier{schema, name}.Sanitize())
	if err != nil {
		return nil, s.r.wrap("reading the primary key of "+schema+"."+name, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// change decodes one row change into the open control transaction.
func (s *stream) change(ctx context.Context, relID uint32, decode func(*relation) ([]row, error)) error {
	rel := s.rels[relID]
	if rel == nil {
		return s.r.wrap("decoding pgoutput", fmt.Errorf("change for relation %d before its RELATION message", relID))
	}
	if rel.keyErr != nil {
		return rel.keyErr
	}
	rows, err := decode(rel)
	if err != nil {
		return s.r.wrap("decoding a change", err)
	}
	for _, rw := range rows {
		s.buf = append(s.buf, []any{s.r.Node, rw.table, rw.op, rw.keys, rw.old, rw.new, s.at, s.origin, s.xid})
	}
	s.txRows += int64(len(rows))
	if s.tx == nil {
		if s.tx, err = s.r.Control.Begin(ctx); err != nil {
			return fmt.Errorf("control: beginning a batch for node %s: %w", s.r.Node, err)
		}
		s.txStarted = time.Now()
	}
	if len(s.buf) >= chunkRows {
		return s.copy(ctx)
	}
	return nil
}

var logColumns = []string{"node", "table_name", "op", "keys", "old", "new", "captured_at", "origin", "xid"}

// widenXid returns the full transaction id whose low 32 bits are xid and
// which lies within 2^31 of ref. Every transaction id a node still has to
// decode is that close to any other (the server's wraparound protection,
// which the slot's catalog_xmin holds), so the stream widens each against
// the last one.
func widenXid(ref uint64, xid uint32) uint64 {
	return uint64(int64(ref) + int64(int32(xid-uint32(ref))))
}

// copy moves the buffered rows into the open control transaction.
func (s *stream) copy(ctx context.Context) error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.tx.CopyFrom(ctx, pgx.Identifier{"tandem", "change_log"}, logColumns, pgx.CopyFromRows(s.buf))
	if err != nil {
		return fmt.Errorf("control: writing change_log rows of node %s: %w", s.r.Node, err)
	}
	s.buf = s.buf[:0]
	return nil
}

// commit ends the control transaction at the last node commit received
// (never inside a node transaction), with the cursor, then confirms the
// position to the server.
func (s *stream) commit(ctx context.Context) error {
	if s.tx == nil || s.inTxn {
		return nil
	}
	if err := s.copy(ctx); err != nil {
		return err
	}
	_, err := s.tx.Exec(ctx, `UPDATE tandem.cursors SET lsn = $2, rows_taken = rows_taken + $3, updated_at = now() WHERE node = $1`,
		s.r.Node, s.txEnd, s.txRows)
	if err != nil {
		return fmt.Errorf("control: advancing cursor of node %s: %w", s.r.Node, err)
	}
	if err := s.tx.Commit(ctx); err != nil {
		return fmt.Errorf("control: committing a batch of node %s: %w", s.r.Node, err)
	}
	rows := s.txRows
	s.tx, s.txRows, s.paused, s.lastFlush = nil, 0, false, time.Now()
	s.r.advance(s.txEnd, rows, nil, false)
	return s.status(false)
}
