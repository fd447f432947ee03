package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/mapping"
	"github.com/tandem-sync/tandem/internal/wal"
)

// DefaultWindow bounds the changes per side one run consumes: a backlog is
// many short runs (each one transaction per node), never one long one.
const DefaultWindow = config.DefaultWindow

// Engine runs the syncs of one config against one control database.
type Engine struct {
	Config  *config.Config
	Control *pgxpool.Pool
	// Nodes are the node pools, by node name, opened with NodePoolConfig.
	Nodes  map[string]*pgxpool.Pool
	Logger *slog.Logger
	// Window bounds the changes per side per run (DefaultWindow if 0); a
	// run of an initial sync reads half as many rows of one side.
	Window int
	// Progress, when set, hears where an initial sync stands after each of
	// its runs, and when it finishes.
	Progress func(InitialProgress)
	// PruneBatch is how many changes one statement of PruneChangeLog
	// deletes (DefaultPruneBatch if 0).
	PruneBatch int
	// PullBatch is how many queue rows a control transaction of a trigger
	// node's pull moves (capture.DefaultBatchSize if 0).
	PullBatch int
	// PullLimit is how many changes the pull before a window moves before
	// it may stop, the rest left for the windows after (the window's size
	// if 0; see capture.Reader.PullUpTo). A pull stops only after a whole
	// batch (PullBatch), so it moves at least that many when it can.
	PullLimit int

	initMu  sync.Mutex // guards readers until init succeeds
	readers map[string]*nodeReader

	markedMu sync.Mutex
	marked   map[string]bool // nodes known to have capture version >= markerVersion

	markers markerCache // parsed markers of the sync's own applies (readLater)

	stateMu  sync.Mutex
	hasState map[string]bool // syncs known to have a sync_state row: no initial sync due

	wakeOnce sync.Once
	wake     chan string // wal nodes whose stream wrote changes

	test testHooks
}

// testHooks are what the tests count and hook into (export_test.go).
type testHooks struct {
	lookedAhead  atomic.Int64 // windows that took rows a look-ahead read
	earlyRecords atomic.Int64 // records committed while their apply committed (earlyRecord)
	readAhead    atomic.Int64 // look-aheads that read their links
	readAfter    atomic.Int64 // windows that read the sync's own rows after them
	recheck      func()       // called in each verify re-check round once the sync has caught up
	window       func()       // called before each window's pull
}

// walWake delivers the name of a wal node whose stream wrote changes
// to change_log (one wake may stand for many writes).
func (e *Engine) walWake() chan string {
	e.wakeOnce.Do(func() { e.wake = make(chan string, len(e.Nodes)+1) })
	return e.wake
}

// nodeReader serializes pulls of one node: several syncs share it.
type nodeReader struct {
	mu sync.Mutex
	r  puller
}

// puller moves a node's captured changes into change_log: a
// *capture.Reader (trigger capture) or a *wal.Reader (capture: wal).
type puller interface {
	Pull(ctx context.Context) (capture.PullResult, error)
}

// boundedPuller is a puller that can stop part way (trigger capture's
// reader: see capture.Reader.PullUpTo). A WAL stream cannot: its Pull
// waits for what the stream has under way.
type boundedPuller interface {
	PullUpTo(ctx context.Context, max int64, origin string) (capture.PullResult, error)
}

// Result says what one run did.
type Result struct {
	RunID     int64 // 0 when there was nothing to do
	Created   int
	Updated   int
	Deleted   int
	Conflicts int
	Errors    int
	Held      int // entities a manual conflict holds
	Idle      bool
	// Busy: another session held the sync (another tandem process, or the
	// session of a run cut off here that the server has not ended yet), so
	// this call did nothing. Its changes wait for the next run.
	Busy bool
}

// Synced is created + updated + deleted.
func (r Result) Synced() int { return r.Created + r.Updated + r.Deleted }

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) windowSize() int {
	if e.Window > 0 {
		return e.Window
	}
	return DefaultWindow
}

// The settings of the engine's sessions on nodes: rows render under them
// as capture renders them (capture.Render*), whatever the applications'
// sessions use. A key the engine reads back is then the key captured for
// the same row.
const (
	sessionTimeZone      = capture.RenderTimeZone
	sessionIntervalStyle = capture.RenderIntervalStyle
	sessionFloatDigits   = capture.RenderFloatDigits
)

// NodePoolConfig parses a node's DSN into a pool configuration whose
// sessions have the settings the engine needs (see Engine.Nodes). Each
// connection sets them once it is open, with set_config: a connection
// pooler that refuses unknown startup parameters lets that through.
func NodePoolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT set_config('TimeZone', $1, false), set_config('IntervalStyle', $2, false),
			set_config('extra_float_digits', $3, false)`,
			sessionTimeZone, sessionIntervalStyle, sessionFloatDigits)
		return err
	}
	return cfg, nil
}

// OpenNodePool opens a pool on a node with NodePoolConfig.
func OpenNodePool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := NodePoolConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// checkSession fails unless the node pool's sessions have the engine's
// settings: a pool opened otherwise would read keys back in another
// rendering than capture's, and edits would miss their rows.
func checkSession(ctx context.Context, node string, pool *pgxpool.Pool) error {
	var tz, style, digits string
	err := pool.QueryRow(ctx, `SELECT current_setting('TimeZone'), current_setting('IntervalStyle'), current_setting('extra_float_digits')`).
		Scan(&tz, &style, &digits)
	if err != nil {
		return fmt.Errorf("node %s: reading session settings: %w", node, err)
	}
	if tz != sessionTimeZone || style != sessionIntervalStyle || digits != sessionFloatDigits {
		return fmt.Errorf("node %s: the engine's sessions run with TimeZone %s, IntervalStyle %s, extra_float_digits %s; "+
			"they need %s, %s and %s (open node pools with engine.NodePoolConfig)",
			node, tz, style, digits, sessionTimeZone, sessionIntervalStyle, sessionFloatDigits)
	}
	return nil
}

// init reads the control database's identity and sets up one reader per
// node. A failure (the control database unreachable, a cancelled context)
// is not remembered: the next call tries again.
func (e *Engine) init(ctx context.Context) error {
	e.initMu.Lock()
	defer e.initMu.Unlock()
	if e.readers != nil {
		return nil
	}
	id, err := control.InstanceID(ctx, e.Control)
	if err != nil {
		return fmt.Errorf("control: reading instance id (run `tandem migrate`?): %w", err)
	}
	readers := map[string]*nodeReader{}
	for name, pool := range e.Nodes {
		if err := checkSession(ctx, name, pool); err != nil {
			return err
		}
		n := e.Config.Nodes[name]
		if e.isWAL(name) {
			keys := map[string][]string{}
			for _, t := range e.Config.TablesOnNode(name) {
				keys[t.Schema+"."+t.Name] = t.Key
			}
			readers[name] = &nodeReader{r: &wal.Reader{Node: name, NodeDB: pool, Control: e.Control,
				Slot: capture.SlotName(id, name), Keys: keys, MaxRetained: n.MaxRetainedWAL, Logger: e.logger(), Changed: func() {
					select {
					case e.walWake() <- name:
					default: // a wake for it is already waiting
					}
				}}}
			continue
		}
		r := &capture.Reader{Node: name, NodeDB: pool, Control: e.Control, Consumer: id, Logger: e.logger(), BatchSize: e.PullBatch}
		if n != nil {
			r.MaxQueueRows, r.MaxQueueAge = n.QueueLimit.Rows, n.QueueLimit.Age
		}
		readers[name] = &nodeReader{r: r}
	}
	e.readers = readers
	return nil
}

// Close stops the WAL streams of wal nodes. The engine's pools are the
// caller's to close.
func (e *Engine) Close() {
	e.initMu.Lock()
	defer e.initMu.Unlock()
	for _, nr := range e.readers {
		if c, ok := nr.r.(interface{ Close() }); ok {
			c.Close()
		}
	}
}

// isWAL reports whether a node is captured from its WAL.
func (e *Engine) isWAL(node string) bool {
	n := e.Config.Nodes[node]
	return n != nil && n.Capture == config.CaptureWAL
}

// Pull moves a node's captured changes into change_log.
func (e *Engine) Pull(ctx context.Context, node string) (capture.PullResult, error) {
	return e.pullUpTo(ctx, node, 0, "")
}

// pullUpTo is Pull stopping after about max changes (0: all), never short
// of a change of origin (see capture.Reader.PullUpTo), on nodes whose
// reader can stop part way.
func (e *Engine) pullUpTo(ctx context.Context, node string, max int64, origin string) (capture.PullResult, error) {
	if err := e.init(ctx); err != nil {
		return capture.PullResult{}, err
	}
	nr := e.readers[node]
	if nr == nil {
		return capture.PullResult{}, fmt.Errorf("node %s has no connection", node)
	}
	nr.mu.Lock()
	defer nr.mu.Unlock()
	if b, ok := nr.r.(boundedPuller); ok && max > 0 {
		return b.PullUpTo(ctx, max, origin)
	}
	return nr.r.Pull(ctx)
}

// syncRun is one run of one sync.
type syncRun struct {
	e        *Engine
	cfg      *config.Sync
	src, tgt *side
	m        *mapping.Mapping
	mayHold  bool // the sync had open conflicts when the run began
	retrying bool // the sync had failed writes to retry when the run began
	seeding  bool // the run is a chunk of the initial sync
	// initialDone: planning found the initial sync's last chunk done.
	initialDone bool
	// ahead: the chunk after the last one, being read; next: the read this
	// run started.
	ahead, next *readAhead
	// looked: each side's look-ahead the run before started; looking: the
	// ones this run started.
	looked, looking [2]*lookAhead
	// relinked: per side, the keys whose links this run's record changed;
	// relinkedBefore: the run before's, whose look-ahead read links
	// maybe before that record.
	relinked, relinkedBefore [2]map[string]bool
	// repair: keys of each side to repair (see Repair), when no run is
	// pending and no initial sync under way; repairPlanned: this run is it.
	repair        *[2][]Values
	repairPlanned bool
	// pulledAll: the pull before this run took everything committed before
	// it; pullAll: this run needs such a pull first (an initial sync's
	// hand-over), and planned nothing.
	pulledAll, pullAll bool
}

// errPullAll stops planning a run that needs a pull of everything first.
var errPullAll = errors.New("the pull before this run stopped part way; pull everything and plan again")

func (e *Engine) newRun(s *config.Sync) (*syncRun, error) {
	m := mapping.Compile(s.Fields)
	sp, tp := e.Nodes[s.Source.Node], e.Nodes[s.Target.Node]
	if sp == nil || tp == nil {
		return nil, fmt.Errorf("sync %s: no connection to node %s or %s", s.ID, s.Source.Node, s.Target.Node)
	}
	r := &syncRun{e: e, cfg: s, m: m,
		src: newSide(mapping.Source, s.Source, sp, m.Columns(mapping.Source)),
		tgt: newSide(mapping.Target, s.Target, tp, m.Columns(mapping.Target)),
	}
	r.src.shared, r.tgt.shared = e.syncsReading(s.Source) > 1, e.syncsReading(s.Target) > 1
	r.src.wal, r.tgt.wal = e.isWAL(s.Source.Node), e.isWAL(s.Target.Node)
	return r, nil
}

// syncsReading counts the syncs of the config that read a node table.
func (e *Engine) syncsReading(ep config.Endpoint) int {
	n := 0
	for _, s := range e.Config.Syncs {
		for _, o := range []config.Endpoint{s.Source, s.Target} {
			if o.Node == ep.Node && o.Schema() == ep.Schema() && o.Name() == ep.Name() {
				n++
			}
		}
	}
	return n
}

// RunSync runs one sync once: pull both sides, then consume windows until
// none is left (each window a run of its own). trigger is recorded in
// sync_runs (notify, interval, once, manual).
//
// A sync that has never run first does its initial sync (see Resync).
func (e *Engine) RunSync(ctx context.Context, id, trigger string) (Result, error) {
	return e.runSync(ctx, id, trigger, false, nil)
}

// runSync runs a sync until its windows are done: first its initial sync
// when it has none yet or resync asks for one, and a repair of the given
// keys when repair is set.
func (e *Engine) runSync(ctx context.Context, id, trigger string, resync bool, repair *[2][]Values) (Result, error) {
	var total Result
	total.Idle = true
	s, ok := e.Config.SyncByID(id)
	if !ok {
		return total, fmt.Errorf("no sync %q in %s", id, e.Config.Path)
	}
	if err := e.init(ctx); err != nil {
		return total, err
	}
	release, err := e.lockSync(ctx, id, 0)
	if errors.Is(err, ErrBusy) {
		e.logger().Debug("sync is running elsewhere", "sync", id)
		total.Busy = true
		return total, nil
	}
	if err != nil {
		return total, err
	}
	defer release()
	return e.runLocked(ctx, s, trigger, resync, repair)
}

// runLocked runs the sync's windows while the caller holds its lock:
// first its initial sync when it has none yet or resync asks for one.
// Every path that runs a sync comes here, so none can start one without
// its initial sync.
func (e *Engine) runLocked(ctx context.Context, s *config.Sync, trigger string, resync bool, repair *[2][]Values) (Result, error) {
	var total Result
	total.Idle = true
	id := s.ID
	if !resync {
		var err error
		if resync, err = e.needsInitial(ctx, id); err != nil {
			return total, err
		}
	}
	var ahead *readAhead
	var looked [2]*lookAhead
	var relinked [2]map[string]bool
	var pulls [2]pullState
	pullAll := false
	defer func() {
		ahead.wait()
		looked[0].stop() // no window follows to take them
		looked[1].stop()
	}()
	for {
		// Pull before every window: the echoes of the last window's applies
		// must be in change_log before the next window is cut. A pull stops
		// after about a window's changes, never short of the sync's own
		// writes, so a backlog's first window need not wait for the rest;
		// the run goes on until everything committed before it began is
		// taken (owed). A side whose look-ahead pulled (once the window's
		// apply there was in, or when the window wrote nothing there, on a
		// node of its own; not one that pulled before the window's apply
		// there) is not pulled again for the next window: it reads what the
		// look-ahead pulled (the look-ahead's read of it may still go on
		// meanwhile).
		if e.test.window != nil {
			e.test.window()
		}
		var skip [2]bool
		if s.Source.Node != s.Target.Node {
			for side, a := range looked {
				if a != nil {
					<-a.pullDone
					if a.pulled {
						pulls[side].saw(a.pull)
						skip[side] = !a.beforeApply
					}
				}
			}
		}
		limit := e.pullLimit()
		if pullAll || resync {
			// An initial sync begins after everything committed before it
			// (its cursors start at the last change taken), and hands over
			// once everything committed before its last read is taken.
			skip, limit = [2]bool{}, 0
		}
		pulled, err := e.pullSidesUpTo(ctx, s, limit, skip)
		if err != nil {
			return total, err
		}
		for side := range pulled {
			if !skip[side] {
				pulls[side].saw(pulled[side])
			}
		}
		owed := !pulls[0].met || !pulls[1].met
		r, err := e.newRun(s)
		if err != nil {
			return total, err
		}
		if resync {
			begun, err := r.beginInitial(ctx)
			if err != nil {
				return total, err
			}
			resync = !begun // a pending run goes first
			if begun {
				e.reportProgress(ctx, id, false)
			}
		}
		r.ahead, r.repair, r.looked, r.relinkedBefore = ahead, repair, looked, relinked
		r.pulledAll = !pulled[0].Cut && !pulled[1].Cut && !skip[0] && !skip[1]
		res, more, err := r.run(ctx, trigger)
		pullAll = r.pullAll
		ahead, looked, relinked = r.next, r.looking, r.relinked
		r.looked[0].wait() // taken, or not to be
		r.looked[1].wait()
		if r.repairPlanned {
			repair = nil
		}
		total.add(res)
		if r.seeding || r.initialDone {
			e.reportProgress(ctx, id, r.initialDone)
		}
		if err != nil || !more && !owed {
			return total, err
		}
		if stopRequested(ctx) {
			return total, nil // the windows left wait for the next run
		}
	}
}

type stopKey struct{}

// withStop returns ctx carrying stop: once stop is closed, a sync's run
// ends after the window (or initial sync chunk) in hand, which commits.
// The daemon runs syncs with a context that a stop request does not
// cancel, so that window is never cut off; this ends the ones after it.
func withStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

func stopRequested(ctx context.Context) bool {
	stop, _ := ctx.Value(stopKey{}).(<-chan struct{})
	if stop == nil {
		return false
	}
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// pullSides pulls the sync's nodes, both at once: each has its own reader
// and moves its changes in transactions of its own.
func (e *Engine) pullSides(ctx context.Context, s *config.Sync) error {
	_, err := e.pullSidesUpTo(ctx, s, 0, [2]bool{})
	return err
}

func (e *Engine) pullLimit() int64 {
	if e.PullLimit > 0 {
		return int64(e.PullLimit)
	}
	return int64(e.windowSize())
}

// pullSidesUpTo is pullSides with each pull stopping after about max
// changes (0: all), never short of one of the sync's own writes (see
// capture.Reader.PullUpTo); it returns each side's pull (the same one for
// both when they share a node). The sides in skip are not pulled.
func (e *Engine) pullSidesUpTo(ctx context.Context, s *config.Sync, max int64, skip [2]bool) (res [2]capture.PullResult, err error) {
	pull := func(side mapping.Side, node string) error {
		r, err := e.pullUpTo(ctx, node, max, s.ID)
		if err != nil {
			return fmt.Errorf("sync %s: pulling changes: %w", s.ID, err)
		}
		res[side] = r
		return nil
	}
	if s.Source.Node == s.Target.Node {
		err := pull(mapping.Source, s.Source.Node)
		res[mapping.Target] = res[mapping.Source]
		return res, err
	}
	nodes := [2]string{s.Source.Node, s.Target.Node}
	err = bothSides(func(side mapping.Side) error {
		if skip[side] {
			return nil
		}
		return pull(side, nodes[side])
	})
	return res, err
}

// pullState follows one side's pulls in a run (runLocked): met once they
// have taken everything committed before the run began. A pull that did
// not stop part way took everything committed before it; one that stopped
// took everything before the run if it finished a window that a pull of
// the run opened (whatever came later is for the next run).
type pullState struct{ opened, met bool }

func (p *pullState) saw(r capture.PullResult) {
	if !r.Cut || p.opened && r.Completed {
		p.met = true
	}
	p.opened = p.opened || r.Opened
}

// bothSides runs f for the source and the target at once (each side has a
// node of its own, or the same one).
func bothSides(f func(mapping.Side) error) error {
	other := make(chan error, 1)
	go func() { other <- f(mapping.Target) }()
	err := f(mapping.Source)
	return errors.Join(err, <-other)
}

func (t *Result) add(r Result) {
	t.Created += r.Created
	t.Updated += r.Updated
	t.Deleted += r.Deleted
	t.Conflicts += r.Conflicts
	t.Errors += r.Errors
	t.Held += r.Held
	if !r.Idle {
		t.Idle = false
		t.RunID = r.RunID
	}
}

// run plans, resolves, applies and records one window. more reports that
// the window was full, so another may follow.
func (r *syncRun) run(ctx context.Context, trigger string) (res Result, more bool, err error) {
	res.Idle = true
	start := time.Now()
	retry, held, err := r.openWork(ctx)
	r.mayHold, r.retrying = held, retry
	if err != nil {
		return res, false, err
	}
	w, err := r.planWindow(ctx, trigger, retry)
	if errors.Is(err, errPullAll) {
		r.pullAll = true
		return res, true, nil
	}
	if err != nil || w.RunID == 0 {
		return res, false, err
	}
	r.seeding = w.Seed != nil && w.Seed.Repair == nil
	res.Idle, res.RunID = false, w.RunID
	log := r.e.logger().With("sync", r.cfg.ID, "run_id", w.RunID)
	res, err = r.execute(ctx, w, res)
	if err != nil {
		log.Error("run failed", "err", err)
		r.fail(w.RunID, start, err)
		return res, false, fmt.Errorf("sync %s: run %d: %w", r.cfg.ID, w.RunID, err)
	}
	if res.Synced()+res.Conflicts+res.Errors > 0 {
		log.Info("run", "created", res.Created, "updated", res.Updated, "deleted", res.Deleted,
			"conflicts", res.Conflicts, "errors", res.Errors, "ms", time.Since(start).Milliseconds())
	}
	return res, w.full(r.e.windowSize()) || w.Redo || w.Seed != nil, nil
}

// execute does a planned window: load, resolve, apply, record.
func (r *syncRun) execute(ctx context.Context, w window, res Result) (Result, error) {
	// The sides are on different nodes (or the same one): check both at once.
	if err := bothSides(func(s mapping.Side) error { return r.sides()[s].check(ctx) }); err != nil {
		return res, err
	}
	if r.seeding { // the next chunk is read while this one is done (a checked side knows its key)
		r.next = r.readNext(ctx, w.Seed)
	}
	for _, s := range r.sides() {
		if s.wal {
			continue // WAL capture names the origin of each transaction: no marker
		}
		has, err := r.e.hasMarkers(ctx, s)
		if err != nil {
			return res, err
		}
		s.marked = has && !s.shared
	}
	// When a backlog follows, the next window's changes are read while this
	// one resolves, applies and records: at once on a side it will most
	// likely not write (see unwritten), else on a side it writes nothing to
	// once it is resolved, on a side it writes once that apply is in (its
	// marker comes next).
	lookAhead := func(s *side) {
		// (Not on a side whose changes a one-way sync ignores, nor once a
		// stop is asked for: no window follows.)
		if w.Seed == nil && w.full(r.e.windowSize()) && r.flows(s.Which) && !stopRequested(ctx) {
			_, through := w.bounds(s.Which)
			r.looking[s.Which] = r.lookAhead(ctx, s, through)
		}
	}
	for _, s := range r.sides() {
		if r.unwritten(w, s.Which) {
			lookAhead(s)
		}
	}
	p, err := r.resolveWindow(ctx, w)
	if err != nil {
		return res, err
	}
	for _, s := range r.sides() {
		switch a := r.looking[s.Which]; {
		case len(p.writes[s.Which]) == 0 && a == nil:
			lookAhead(s)
		case len(p.writes[s.Which]) > 0 && a != nil:
			a.beforeApply = true // written after all: its pull misses the apply's marker
		}
	}
	// The last apply's result is known before it commits: the window's
	// record is written meanwhile, and commits once that apply has (see
	// earlyRecord). Not when an update of either side missed its row: the
	// record then adds conflicts to the plan (missingConflicts). (Rows
	// rejected one by one report no result: see applyOnce.)
	last := mapping.Target
	if len(p.writes[mapping.Source]) > 0 {
		last = mapping.Source
	}
	var results [2]*applyResult
	var early *earlyRecord
	known := func(ar *applyResult) {
		if ar == nil { // the attempt failed: its record lets go of control
			early.settle(false)
			early = nil
			return
		}
		if early != nil {
			return
		}
		rs := results
		rs[last] = ar
		for s := range rs {
			if rs[s] == nil {
				rs[s] = &applyResult{} // a side with nothing to write
			}
			if len(rs[s].Missing) > 0 {
				return
			}
		}
		early = r.recordEarly(ctx, w, p, rs, res)
	}
	for _, s := range []mapping.Side{mapping.Target, mapping.Source} {
		var heard func(*applyResult)
		if s == last {
			heard = known
		}
		if results[s], err = r.apply(ctx, r.sides()[s], w, p.writes[s], heard); err != nil {
			early.settle(false)
			return res, err
		}
		if len(p.writes[s]) > 0 && r.looking[s] == nil {
			lookAhead(r.sides()[s])
		}
	}
	if early != nil {
		out, ok, err := early.settle(reflect.DeepEqual(results, early.results))
		if ok || err != nil {
			return out, err
		}
	}
	return r.finish(ctx, w, p, results, res, nil)
}
