package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/mapping"
)

// The initial sync brings a sync's existing rows into step before it
// streams: the first run of a new sync does it, and `tandem run --resync`.
//
// It begins by pulling both sides and setting the sync's change_log cursors
// to the last change taken: every change up to there is in the rows it will
// read, and every later one is consumed by the runs that follow it, except
// one a chunk already saw in a row it read (filterSeen). Then it walks the source table in key order, one chunk
// per run, pairing each row with the target's row of the same natural key
// (`match`) or mapped key, settling pairs that differ by the sync's
// `initial` strategy and creating the rows the target lacks; then the target
// table, creating on the source the rows nothing paired. Each chunk is a run
// like any other (sync_runs trigger "initial"): applied once to each node
// with tandem.applied, then recorded with the chunk's end in one control
// transaction, so a process killed anywhere resumes at the chunk it was in.

// seed is the chunk of existing rows a run of the initial sync covers: the
// rows of one side with keys in (After, Upto], in key order.
type seed struct {
	Phase    mapping.Side
	After    Values // nil: from the first row
	Upto     Values
	Bounds   initialBounds
	rows     []Values // read ahead, or nil
	snapshot string   // what rows were read in
	// Repair: not a chunk of the initial sync but the keys of each side
	// that a repair brings into step (see Repair).
	Repair *[2][]Values
}

// readAhead reads the chunk after a planned one while that one is
// resolved and applied: the two nodes and the control database then work
// at once. A chunk read early is as good as one read on time: a change
// made to its rows since was captured after the initial sync began, and
// streams after it.
type readAhead struct {
	phase       mapping.Side
	after, upto Values
	rows        []Values
	snapshot    string
	err         error
	done        chan struct{}
}

// readNext starts reading the chunk after sd, up to the phase's bound.
func (r *syncRun) readNext(ctx context.Context, sd *seed) *readAhead {
	f := &readAhead{phase: sd.Phase, after: sd.Upto, done: make(chan struct{})}
	s := *r.sides()[sd.Phase] // its own copy: the run checks the side meanwhile
	s.Key, s.Cols = slices.Clone(s.Key), slices.Clone(s.Cols)
	last := sd.Bounds.last(sd.Phase)
	go func() {
		defer close(f.done)
		if f.upto, f.err = s.chunkEnd(ctx, f.after, last, r.seedRows()); f.err != nil || f.upto == nil {
			return
		}
		f.rows, f.snapshot, f.err = s.rowsIn(ctx, f.after, f.upto)
	}()
	return f
}

// take waits for the read and returns it when it is the chunk after key
// after of phase; nil otherwise.
func (f *readAhead) take(phase mapping.Side, after Values) *readAhead {
	if f == nil {
		return nil
	}
	<-f.done
	if f.phase != phase || after == nil || canonicalKey(f.after) != canonicalKey(after) {
		return nil
	}
	return f
}

// wait lets a read still under way end.
func (f *readAhead) wait() {
	if f != nil {
		<-f.done
	}
}

// initialBounds is what an initial sync walks: each side's rows up to its
// last key when the initial sync began (later rows were captured after it
// began: they stream). Linked: the sync had links then; without any, a
// source row walked has none (its chunk is the first to see it).
type initialBounds struct {
	Source Values `json:"source"`
	Target Values `json:"target"`
	Linked bool   `json:"linked"`
}

// last is the last key of side s the initial sync walks.
func (b initialBounds) last(s mapping.Side) Values {
	if s == mapping.Target {
		return b.Target
	}
	return b.Source
}

// InitialProgress is where a sync's initial sync stands.
type InitialProgress struct {
	Sync     string
	Done     int64 // rows of both tables walked
	Total    int64 // rows both tables held when it began
	Started  time.Time
	Finished bool
}

// Resync runs a sync's initial sync again (`tandem run --resync`): every row
// of both tables is paired, compared and completed as on the sync's first
// run, then the sync streams on.
func (e *Engine) Resync(ctx context.Context, id string) (Result, error) {
	return e.runSync(ctx, id, "initial", true, nil)
}

// beginInitial starts the initial sync of the run's sync, after its sides
// were pulled. It does nothing while a run of the sync is pending (that run
// is finished first). It fails, naming the rows, when one natural key names
// several rows of a side.
func (r *syncRun) beginInitial(ctx context.Context) (bool, error) {
	// A pending run goes first: no table scan for an initial sync that
	// cannot begin yet (the sync's lock keeps it so until the UPDATE below).
	var pending bool
	if err := r.e.Control.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tandem.sync_state WHERE sync_id = $1 AND pending_run IS NOT NULL)`,
		r.cfg.ID).Scan(&pending); err != nil {
		return false, fmt.Errorf("control: reading the state of sync %s: %w", r.cfg.ID, err)
	}
	if pending {
		return false, nil
	}
	if err := bothSides(func(s mapping.Side) error { return r.sides()[s].check(ctx) }); err != nil {
		return false, err
	}
	// The cursors first, then the rows: every change taken up to the cursor
	// committed before the rows are read, so the reads see it. (A WAL
	// stream writes change_log on its own time: read the other way round,
	// a row committed between the two reads would be in neither.)
	var through [2]int64
	for i, s := range r.sides() {
		if err := r.e.Control.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM tandem.change_log WHERE node = $1 AND table_name = $2`,
			s.Node, s.Table).Scan(&through[i]); err != nil {
			return false, fmt.Errorf("control: reading change_log of %s on node %s: %w", s.Table, s.Node, err)
		}
	}
	var err error
	var counts [2]int64
	for i, s := range r.sides() {
		if counts[i], err = s.rowCount(ctx); err != nil {
			return false, err
		}
	}
	var until initialBounds
	if until.Source, err = r.src.lastKey(ctx); err != nil {
		return false, err
	}
	if until.Target, err = r.tgt.lastKey(ctx); err != nil {
		return false, err
	}
	if err := r.e.Control.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tandem.links WHERE sync_id = $1)`, r.cfg.ID).Scan(&until.Linked); err != nil {
		return false, fmt.Errorf("control: reading links of sync %s: %w", r.cfg.ID, err)
	}
	pairs := r.pairFields()
	if len(pairs) == 0 && counts[0] > 0 && counts[1] > 0 {
		r.e.logger().Warn("initial sync: both tables hold rows and the sync has no `match` and no mapped key: "+
			"every row is created on the other side (a unique constraint there sends a clash to sync_errors); "+
			"add `match: [column]` to pair rows that are the same", "sync", r.cfg.ID,
			"source_rows", counts[0], "target_rows", counts[1])
	}
	if len(pairs) > 0 {
		for _, s := range r.sides() {
			if err := r.duplicates(ctx, s, pairs); err != nil {
				return false, err
			}
		}
	}
	var begun bool
	err = pgx.BeginFunc(ctx, r.e.Control, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tandem.sync_state (sync_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.cfg.ID); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `UPDATE tandem.sync_state SET
				source_through = greatest(source_through, $2), target_through = greatest(target_through, $3),
				initial_phase = 'source', initial_after = NULL, initial_until = $5, initial_done = 0, initial_total = $4,
				initial_started_at = now(), initial_completed_at = NULL
			WHERE sync_id = $1 AND pending_run IS NULL RETURNING true`,
			r.cfg.ID, through[0], through[1], counts[0]+counts[1], encodeJSONReflect(until)).Scan(&begun)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("control: beginning the initial sync of %s: %w", r.cfg.ID, err)
	}
	if begun {
		r.e.logger().Info("initial sync", "sync", r.cfg.ID, "source_rows", counts[0], "target_rows", counts[1])
	}
	return begun, nil
}

// needsInitial reports whether the sync has never run: it has no state yet.
// Only a no is remembered (a sync's state is never removed), so a run does
// not ask again.
func (e *Engine) needsInitial(ctx context.Context, id string) (bool, error) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if e.hasState[id] {
		return false, nil
	}
	var exists bool
	err := e.Control.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tandem.sync_state WHERE sync_id = $1)`, id).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("control: reading the state of sync %s: %w", id, err)
	}
	if exists {
		if e.hasState == nil {
			e.hasState = map[string]bool{}
		}
		e.hasState[id] = true
	}
	return !exists, nil
}

// planSeed plans the next chunk of an initial sync under way, in the
// planning transaction, moving to the next phase (and at last out of the
// initial sync) when a side has no rows left. It returns nil once it is
// done, with the bands it set in band.
func (r *syncRun) planSeed(ctx context.Context, tx pgx.Tx, phase string, after, until []byte, band *[2]*int64) (*seed, error) {
	sd, err := r.decodeSeed(phase, after, until)
	if err != nil {
		return nil, err
	}
	for {
		s := r.sides()[sd.Phase]
		if sd.Phase == mapping.Target && !r.flows(mapping.Target) {
			break // a one-way sync creates nothing on its source
		}
		if err := s.check(ctx); err != nil {
			return nil, err
		}
		last := sd.Bounds.last(sd.Phase)
		if f := r.ahead.take(sd.Phase, sd.After); f != nil && f.err == nil && f.upto != nil {
			sd.Upto, sd.rows, sd.snapshot = f.upto, f.rows, f.snapshot // read while the last chunk applied
		} else if sd.Upto, err = s.chunkEnd(ctx, sd.After, last, r.seedRows()); err != nil {
			return nil, err
		}
		if sd.Upto != nil {
			return sd, nil
		}
		if sd.Phase == mapping.Target {
			break
		}
		sd.Phase, sd.After = mapping.Target, nil
		if _, err := tx.Exec(ctx, `UPDATE tandem.sync_state SET initial_phase = 'target', initial_after = NULL WHERE sync_id = $1`, r.cfg.ID); err != nil {
			return nil, err
		}
	}
	// Done: a change taken so far may be one a chunk already read in a row
	// (filterSeen); the ones taken later committed after every read. So
	// the pull before must have taken everything: when it stopped part way,
	// the run pulls everything and plans again (not in this transaction,
	// whose snapshot may predate that pull).
	if !r.pulledAll {
		return nil, errPullAll
	}
	if err := tx.QueryRow(ctx, `UPDATE tandem.sync_state SET initial_phase = NULL, initial_after = NULL, initial_until = NULL,
			initial_completed_at = now(),
			initial_band_source = (SELECT max(id) FROM tandem.change_log WHERE node = $2 AND table_name = $3),
			initial_band_target = (SELECT max(id) FROM tandem.change_log WHERE node = $4 AND table_name = $5)
		WHERE sync_id = $1 RETURNING initial_band_source, initial_band_target`,
		r.cfg.ID, r.src.Node, r.src.Table, r.tgt.Node, r.tgt.Table).Scan(&band[0], &band[1]); err != nil {
		return nil, err
	}
	r.initialDone = true
	return nil, nil
}

// decodeSeed reads where the initial sync stands from sync_state: its
// phase, the last key done (initial_after) and its bounds (initial_until).
func (r *syncRun) decodeSeed(phase string, after, until []byte) (*seed, error) {
	sd := &seed{Phase: mapping.Source}
	if phase == "target" {
		sd.Phase = mapping.Target
	}
	var err error
	if sd.After, err = decodeJSON(after); err != nil {
		return nil, fmt.Errorf("sync_state.initial_after of %s: %w", r.cfg.ID, err)
	}
	if sd.Bounds, err = decodeBounds(until); err != nil {
		return nil, fmt.Errorf("sync_state.initial_until of %s: %w", r.cfg.ID, err)
	}
	return sd, nil
}

// decodeBounds decodes sync_state.initial_until; numbers in keys stay
// json.Number, as in every key the engine handles.
func decodeBounds(b []byte) (initialBounds, error) {
	var out initialBounds
	err := decodeNumbers(b, &out)
	return out, err
}

// seedRows is the number of rows one run of the initial sync reads.
func (r *syncRun) seedRows() int { return max(r.e.windowSize()/2, 1) }

// resolveSeed pairs and decides one chunk of the initial sync.
func (r *syncRun) resolveSeed(ctx context.Context, sd *seed) (*plan, error) {
	p := &plan{}
	from, to := sd.Phase, sd.Phase.Other()
	fs, ts := r.sides()[from], r.sides()[to]
	rows, snap := sd.rows, sd.snapshot
	if rows == nil {
		var err error
		if rows, snap, err = fs.rowsIn(ctx, sd.After, sd.Upto); err != nil {
			return nil, err
		}
	}
	p.seen[from] = snap
	p.seeded = len(rows)
	ents := make([]*entity, 0, len(rows))
	var keys [2][]string
	for _, row := range rows {
		e := &entity{}
		k := fs.keyOf(row)
		e.key[from], e.keyTxt[from] = k, canonicalKey(k)
		e.net[from] = seedNet(from, k, e.keyTxt[from], row)
		keys[from] = append(keys[from], e.keyTxt[from])
		ents = append(ents, e)
	}
	if from == mapping.Source && !sd.Bounds.Linked {
		keys[from] = nil // no link existed when the initial sync began
	}
	links, err := r.loadLinks(ctx, keys)
	if err != nil {
		return nil, err
	}
	var linked []Values
	for _, e := range ents {
		if o, ok := links[from][e.keyTxt[from]]; ok {
			e.key[to], e.keyTxt[to], e.linked = o.vals, o.text, true
			linked = append(linked, o.vals)
		}
	}
	if from == mapping.Target {
		linked = nil // a linked target row was compared while the source was walked
	}
	// The other side's rows that this chunk compares (linked partners, and
	// rows of the same natural key), read in one snapshot, which the links
	// keep: see filterSeen.
	var partners map[string]Values
	var unpaired []*entity
	err = ts.readSnapshot(ctx, func(tx pgx.Tx, snap string) error {
		p.seen[to] = snap
		var err error
		if partners, err = ts.fetchRows(ctx, tx, linked); err != nil {
			return err
		}
		unpaired = r.partnersOf(ents, partners, to)
		for _, e := range ents {
			if e.linked && e.net[to] != nil { // a linked pair, both rows read
				p.compared = append(p.compared, e.keyTxt[mapping.Source])
			}
		}
		return r.pairSeed(ctx, tx, p, from, unpaired)
	})
	if err != nil {
		return nil, err
	}
	ents = slices.DeleteFunc(ents, func(e *entity) bool { return e.net[0] == nil && e.net[1] == nil })
	return r.decideExisting(ctx, p, ents)
}

// decideExisting resolves entities made of existing rows (an initial sync's
// chunk, a repair): held ones wait in their conflict, latest_wins reads
// when each row last changed, and the rest is decided as in any run.
func (r *syncRun) decideExisting(ctx context.Context, p *plan, ents []*entity) (*plan, error) {
	if err := r.markHeld(ctx, ents); err != nil {
		return nil, err
	}
	if r.strategy() == config.ConflictLatestWins {
		if err := r.seedTimes(ctx, ents); err != nil {
			return nil, err
		}
	}
	v := &resolver{run: r, m: r.m, plan: p}
	v.decide(ents)
	return p, nil
}

// partnersOf gives the chunk's linked entities their partner rows, and
// returns the entities with none (to pair by natural key).
func (r *syncRun) partnersOf(ents []*entity, partners map[string]Values, to mapping.Side) []*entity {
	from := to.Other()
	var unpaired []*entity
	for _, e := range ents {
		if e.linked {
			if row, ok := partners[e.keyTxt[to]]; ok {
				e.net[to] = seedNet(to, e.key[to], e.keyTxt[to], row)
				continue
			}
			// Linked to a row that is gone: deleted since the initial sync
			// began (the delete streams after it), or behind tandem's back
			// (`tandem verify --repair` finds it). Not guessed here.
			e.net[from] = nil
			continue
		}
		unpaired = append(unpaired, e)
	}
	return unpaired
}

// seedNet is an existing row as the net change an initial sync resolves:
// created, with every column.
func seedNet(s mapping.Side, key Values, text string, row Values) *netChange {
	return &netChange{Side: s, Key: text, KeyVals: key, Op: netUpsert, Created: true, Vals: row,
		At: map[string]time.Time{}}
}

// pairFields are the one-to-one fields that pair existing rows: the match
// columns' fields, or else the fields that map the source key to the
// target key. None: rows cannot be paired.
func (r *syncRun) pairFields() []*mapping.Field {
	if len(r.cfg.Match) > 0 {
		return r.matchFields()
	}
	if len(r.src.Key) != len(r.tgt.Key) {
		return nil
	}
	var out []*mapping.Field
	for i, k := range r.src.Key {
		var found *mapping.Field
		for _, f := range r.m.Fields {
			if len(f.Source) == 1 && len(f.Target) == 1 && f.Source[0] == k && f.Target[0] == r.tgt.Key[i] {
				found = f
			}
		}
		if found == nil {
			return nil
		}
		out = append(out, found)
	}
	return out
}

// pairValue is a row's natural key value for field f, normalised the way
// the field's transform maps it from the source (lowercase, trim, ...), for
// a row of either side. nil: the row has none, and pairs with nothing.
func pairValue(f *mapping.Field, s mapping.Side, row Values) any {
	in := row
	if s == mapping.Target {
		in = Values{f.Source[0]: row[f.Target[0]]}
	}
	out, err := f.Map(mapping.Source, in)
	if err != nil {
		return nil
	}
	return out[f.Target[0]]
}

// pairSQL is the SQL of pairValue for column c of table alias t on either
// side: the field's transform where it normalises (lowercase, uppercase,
// trim, as mapping.Field.SQL writes them), the column as it is otherwise.
func pairSQL(f *mapping.Field, col, t string) string {
	q := t + "." + pgx.Identifier{col}.Sanitize()
	if f.Normalises() {
		if exprs, err := f.SQL(mapping.Source, []string{q}); err == nil {
			return exprs[0]
		}
	}
	return q
}

// duplicates fails when rows of one side share a natural key: the initial
// sync cannot tell which of them is the other side's row.
func (r *syncRun) duplicates(ctx context.Context, s *side, pairs []*mapping.Field) error {
	exprs := make([]string, len(pairs))
	var names []string
	for i, f := range pairs {
		c := f.Columns(s.Which)[0]
		exprs[i] = pairSQL(f, c, "t")
		names = append(names, c)
	}
	list := strings.Join(exprs, ", ")
	rows, err := s.Pool.Query(ctx, fmt.Sprintf(`SELECT jsonb_build_array(%[1]s)::text, count(*), (array_agg(%[2]s ORDER BY %[3]s))[1:3]::text[]
		FROM %[4]s t WHERE (%[1]s) IS NOT NULL GROUP BY %[1]s HAVING count(*) > 1 ORDER BY 1 LIMIT 5`,
		list, s.keyObject("t"), s.keyColumns("t"), s.ident))
	if err != nil {
		return fmt.Errorf("node %s: looking for duplicate natural keys in %s: %w", s.Node, s.Table, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var vals string
		var n int64
		var keys []string
		if err := rows.Scan(&vals, &n, &keys); err != nil {
			return err
		}
		problems = append(problems, fmt.Sprintf("%s in %d rows (%s)", vals, n, strings.Join(keys, ", ")))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("sync %s: initial sync: rows of %s on node %s share a natural key (%s): %s; tandem cannot tell which of them is the other side's row: "+
		"make the key unique there (merge or fix the rows), then run again", r.cfg.ID, s.Table, s.Node, strings.Join(names, ", "), strings.Join(problems, "; "))
}

// pairSeed pairs rows of a chunk with no partner yet to the other side's
// row of the same natural key. One row matching several, or a row another
// entity already has, is an error for that row: reported, not guessed.
func (r *syncRun) pairSeed(ctx context.Context, q querier, p *plan, from mapping.Side, ents []*entity) error {
	fields := r.pairFields()
	if len(fields) == 0 || len(ents) == 0 {
		return nil
	}
	to := from.Other()
	ts := r.sides()[to]
	rows := make([]Values, len(ents))
	for i, e := range ents {
		rows[i] = e.net[from].Vals
	}
	pr, err := r.probePairs(ctx, q, fields, from, rows)
	if err != nil {
		return err
	}
	claimed := map[string]bool{}
	for i, at := range pr.at {
		e, rows := ents[at], pr.found[i]
		if len(rows) == 0 {
			continue
		}
		fail := func(reason string) {
			p.errors = append(p.errors, &errorRow{Side: to, Keys: e.key[from], Reason: reason})
			e.net[from] = nil
		}
		key := ts.keyOf(rows[0])
		kt := canonicalKey(key)
		switch _, linked := pr.taken[kt]; {
		case len(rows) > 1:
			fail(fmt.Sprintf("initial sync: the natural key %s of this row matches %d rows of %s on node %s; tandem cannot tell which is this row's",
				canonicalKey(pr.probes[i]), len(rows), ts.Table, ts.Node))
			continue
		case linked || claimed[kt]:
			fail(fmt.Sprintf("initial sync: the natural key %s of this row matches row %s of %s on node %s, which is already paired with another row",
				canonicalKey(pr.probes[i]), kt, ts.Table, ts.Node))
			continue
		}
		claimed[kt] = true
		p.link(e, to, key, kt)
		e.net[to] = seedNet(to, key, kt, rows[0])
	}
	return nil
}

// seedTimes gives the pairs whose values differ the capture time of their
// last change, for latest_wins. A row not changed since capture was
// installed, or not within change_log_retention, has none: the tie goes to
// the node whose name sorts first.
func (r *syncRun) seedTimes(ctx context.Context, ents []*entity) error {
	var differ []*entity
	for _, e := range ents {
		s, t := e.net[mapping.Source], e.net[mapping.Target]
		if s == nil || t == nil || r.samePair(s.Vals, t.Vals) {
			continue
		}
		differ = append(differ, e)
	}
	if len(differ) == 0 {
		return nil
	}
	var keys [2][]string
	for _, e := range differ {
		for i := range keys {
			keys[i] = append(keys[i], e.keyText(mapping.Side(i)))
		}
	}
	// One walk of change_log for both sides (it has no index by key). Only
	// changes taken within change_log_retention count, whether pruned yet
	// or not: a sync that has stalled keeps its table's old changes, and
	// they must not outweigh the other side's, pruned.
	rows, err := r.e.Control.Query(ctx, `SELECT node = $1 AND table_name = $2, keys::text, max(captured_at) FROM tandem.change_log
		WHERE op <> 'applied' AND ($7::float8 = 0 OR logged_at >= `+retentionCutoff(7)+`)
		  AND ((node = $1 AND table_name = $2 AND keys = ANY ($3::jsonb[])) OR (node = $4 AND table_name = $5 AND keys = ANY ($6::jsonb[])))
		GROUP BY 1, keys`, r.src.Node, r.src.Table, keys[0], r.tgt.Node, r.tgt.Table, keys[1], r.e.Config.ChangeLogRetention.Seconds())
	if err != nil {
		return fmt.Errorf("control: reading capture times of %s on node %s and %s on node %s: %w", r.src.Table, r.src.Node, r.tgt.Table, r.tgt.Node, err)
	}
	at := [2]map[string]time.Time{{}, {}}
	for rows.Next() {
		var source bool
		var k string
		var t time.Time
		if err := rows.Scan(&source, &k, &t); err != nil {
			rows.Close()
			return err
		}
		side := mapping.Target
		if source {
			side = mapping.Source
		}
		if kv, text, err := decodeKey([]byte(k)); err == nil && kv != nil {
			at[side][text] = t
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range differ {
		for s, n := range e.net {
			if t, ok := at[s][e.keyText(mapping.Side(s))]; ok {
				n.Last = t
				for c := range n.Vals {
					n.At[c] = t
				}
			}
		}
	}
	return nil
}

// samePair reports whether a source row and a target row hold the same
// mapped values.
func (r *syncRun) samePair(src, tgt Values) bool {
	for _, f := range r.m.Fields {
		sv, err := f.Map(mapping.Source, src)
		if err != nil || !sameValues(sv, pick(tgt, f.Target)) {
			return false
		}
	}
	return true
}

// reportProgress tells the engine's Progress hook where the sync's initial
// sync stands.
func (e *Engine) reportProgress(ctx context.Context, id string, finished bool) {
	if e.Progress == nil {
		return
	}
	p := InitialProgress{Sync: id, Finished: finished}
	var started *time.Time
	var total *int64
	err := e.Control.QueryRow(ctx, `SELECT initial_done, initial_total, initial_started_at FROM tandem.sync_state WHERE sync_id = $1`, id).
		Scan(&p.Done, &total, &started)
	if err != nil || started == nil || total == nil {
		return
	}
	p.Total, p.Started = *total, *started
	e.Progress(p)
}

// filterSeen drops the changes an initial sync already read: changes taken
// up to band (the last change_log id when it was done) of rows it linked,
// whose transaction committed before the snapshot it read that side's row
// in. Such a change is in the row it compared or copied; applied again it
// would carry the row as it was then over a newer edit on the other side.
// A change whose xid is unknown (a WAL stream logged it before streams
// recorded xids) is kept: applied again.
func (r *syncRun) filterSeen(ctx context.Context, s *side, band *int64, changes []change) ([]change, error) {
	if band == nil {
		return changes, nil
	}
	var ids []int64
	var keys []string
	for _, c := range changes {
		if c.ID <= *band && c.Origin != r.cfg.ID && c.Op != opTruncate {
			ids, keys = append(ids, c.ID), append(keys, c.Key)
		}
	}
	if len(ids) == 0 {
		return changes, nil
	}
	col := "source"
	if s.Which == mapping.Target {
		col = "target"
	}
	// The xid is read here, for these changes only, not with every change a
	// window loads.
	rows, err := r.e.Control.Query(ctx, fmt.Sprintf(`SELECT c.id FROM unnest($2::bigint[], $3::jsonb[]) c(id, key)
		JOIN tandem.change_log x ON x.id = c.id
		JOIN tandem.links l ON l.sync_id = $1 AND l.%[1]s_key = c.key
		WHERE x.xid IS NOT NULL AND l.%[1]s_seen IS NOT NULL AND pg_visible_in_snapshot(x.xid, l.%[1]s_seen::pg_snapshot)`, col),
		r.cfg.ID, ids, keys)
	if err != nil {
		return nil, fmt.Errorf("control: reading what the initial sync of %s read: %w", r.cfg.ID, err)
	}
	seen, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(seen) == 0 {
		return changes, err
	}
	drop := make(map[int64]bool, len(seen))
	for _, id := range seen {
		drop[id] = true
	}
	return slices.DeleteFunc(changes, func(c change) bool { return drop[c.ID] }), nil
}
