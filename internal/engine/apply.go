package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// applyResult is what an apply to one node did. It is stored in the node's
// tandem.applied row with the apply, so a run redone after a crash learns
// what a committed apply created without applying again.
type applyResult struct {
	Created  [][2]string  `json:"created,omitempty"` // write ref -> new key (canonical)
	Failed   []applyError `json:"failed,omitempty"`
	Missing  []string     `json:"missing,omitempty"` // refs of updates that found no row
	Done     []string     `json:"done,omitempty"`    // refs of writes that applied (or were already there)
	Inserted int          `json:"inserted"`
	Updated  int          `json:"updated"`
	Deleted  int          `json:"deleted"`

	wrote []string // refs of writes that changed a row, in statement order
}

type applyError struct {
	Ref        string `json:"ref"`
	Reason     string `json:"reason"`
	SQLState   string `json:"sqlstate,omitempty"`
	Constraint string `json:"constraint,omitempty"`
}

// applyLock takes a sync's apply lock on one side's node ($1 the sync, $2
// the side) until the transaction ends. Whatever writes that side for the
// sync (a run's apply, a conflict's settlement) takes it before reading
// tandem.applied in a later statement: an earlier attempt cut off while its
// COMMIT was on its way is then seen, or has aborted.
const applyLock = `pg_advisory_xact_lock(hashtext('tandem.apply'), hashtext($1 || '/' || $2))`

// lockTimeout bounds how long an apply waits for an application's row
// lock before backing off and retrying.
const lockTimeout = "2s"

// apply writes one side's share of a run in one transaction that also
// records the run in the node's tandem.applied. A lock or serialization
// failure is retried with jittered backoff. known, when set, hears the
// result before the transaction commits (see applyBulk), and nil when an
// attempt that reported one fails.
func (r *syncRun) apply(ctx context.Context, s *side, w window, writes []*write, known func(*applyResult)) (*applyResult, error) {
	if len(writes) == 0 {
		return &applyResult{}, nil
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, err := r.applyOnce(ctx, s, w, writes, known)
		if err != nil && known != nil {
			known(nil)
		}
		if err == nil || !retryable(err) || attempt == 8 {
			if err != nil {
				err = fmt.Errorf("node %s: applying to %s: %w", s.Node, s.Table, err)
			}
			return res, err
		}
		r.e.logger().Warn("apply retried", "sync", r.cfg.ID, "node", s.Node, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *syncRun) applyOnce(ctx context.Context, s *side, w window, writes []*write, known func(*applyResult)) (*applyResult, error) {
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	marked := ""
	if s.marked {
		marked = s.Table
	}
	// The session's settings, then the last apply recorded here, in one
	// round trip (the settings are transaction-local). The first statement
	// also takes the sync's apply lock on this node, so the second reads
	// tandem.applied with a snapshot taken after it: an earlier attempt
	// whose client was cut off but whose COMMIT is still on its way to the
	// server finishes (and is seen) or aborts before this one goes on, and
	// nothing is applied twice.
	var runID *int64
	var stored []byte
	b := &pgx.Batch{}
	b.Queue(`SELECT `+s.originSQL()+`, set_config('lock_timeout', $3, true),
		set_config('tandem.marked', $4, true), `+applyLock,
		r.cfg.ID, s.Which.String(), lockTimeout, marked)
	// The result only when it is this run's: an initial sync's lists
	// thousands of created keys, read back (detoasted) for nothing otherwise.
	// (result #>> '{}': the text of the JSON string the result is stored
	// as, or of an object, as an earlier version stored it.)
	b.Queue(`SELECT run_id, CASE WHEN run_id = $3 THEN result #>> '{}' END FROM tandem.applied WHERE sync_id = $1 AND side = $2`,
		r.cfg.ID, s.Which.String(), w.RunID).
		QueryRow(func(row pgx.Row) error {
			err := row.Scan(&runID, &stored)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	err = tx.SendBatch(ctx, b).Close()
	if err != nil {
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "42P01" {
			return nil, fmt.Errorf("tandem.applied is missing: run `tandem install %s` to upgrade capture: %w", s.Node, err)
		}
		return nil, fmt.Errorf("reading tandem.applied: %w", err)
	}
	if runID != nil && *runID == w.RunID {
		res := &applyResult{}
		return res, json.Unmarshal(stored, res) // applied before a crash: do not apply again
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT tandem_bulk"); err != nil {
		return nil, err
	}
	res, err := s.applyBulk(ctx, tx, writes, known)
	if err != nil && isRowError(err) {
		// One row is bad: apply row by row so the rest goes in.
		if known != nil {
			known(nil) // what it heard was for the bulk statements
		}
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tandem_bulk"); rerr != nil {
			return nil, rerr
		}
		res, err = s.applyEach(ctx, tx, writes)
	}
	if err != nil {
		return nil, err
	}
	// The marker goes in after the writes (see sql/node/0003_marked.sql),
	// in the statement that records the apply: one round trip for both.
	var doc, summary []byte
	if s.marked && len(res.wrote) > 0 {
		if m := marker(writes, res, r.seeding, s.Key); len(m.Writes) > 0 {
			doc, summary = encodeJSON(m), encodeJSON(m.summary())
		}
	}
	// The marker's list and the result go in as JSON strings holding their
	// text (to_jsonb of text): parsed as jsonb, the thousands of objects a
	// bulk apply lists cost the node more than the writes. Its summary (old)
	// is small: a window reading the sync's own rows after it parses only
	// the lists that may matter to it (withOwnAfter).
	_, err = tx.Exec(ctx, `WITH marker AS (
			INSERT INTO tandem.change_queue (table_name, op, old, new, origin)
			SELECT $5, 'applied', $7::jsonb, to_jsonb($6::text), $1 WHERE $6::text IS NOT NULL)
		INSERT INTO tandem.applied (sync_id, side, run_id, result) VALUES ($1, $2, $3, to_jsonb($4::text))
		ON CONFLICT (sync_id, side) DO UPDATE SET run_id = excluded.run_id, result = excluded.result, applied_at = now()`,
		r.cfg.ID, s.Which.String(), w.RunID, encodeJSON(res), s.Table, doc, summary)
	if err != nil {
		return nil, fmt.Errorf("recording the apply in tandem.applied: %w", err)
	}
	return res, tx.Commit(ctx)
}

// rowWrites is the jsonb array a set-based statement reads its rows from.
type rowWrite struct {
	Ref  string `json:"ref"`
	Key  Values `json:"key,omitempty"`
	Vals Values `json:"vals,omitempty"`
}

func byKind(writes []*write, kind string) []rowWrite {
	var out []rowWrite
	for _, w := range writes {
		if w.Kind == kind {
			out = append(out, rowWrite{Ref: w.Ref, Key: w.Key, Vals: w.Vals})
		}
	}
	return out
}

// applyBulk writes deletes and updates as one statement each and inserts
// as one pipelined batch. known, when set, hears the result once only the
// end of the transaction is left, or earlier, once only an insert that
// cannot change it is (see insertBulk): what it hears is the result if
// every statement left succeeds, not a promise (it may hear again).
func (s *side) applyBulk(ctx context.Context, tx pgx.Tx, writes []*write, known func(*applyResult)) (*applyResult, error) {
	res, err := s.applyWrites(ctx, tx, writes, known)
	if err == nil && known != nil {
		known(res)
	}
	return res, err
}

func (s *side) applyWrites(ctx context.Context, tx pgx.Tx, writes []*write, known func(*applyResult)) (*applyResult, error) {
	res := &applyResult{}
	if dels := byKind(writes, "delete"); len(dels) > 0 {
		rows, err := tx.Query(ctx, s.deleteSQL(), encodeJSON(dels))
		if err != nil {
			return nil, err
		}
		refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		res.Deleted += len(refs)
		res.wrote = append(res.wrote, refs...)
		for _, d := range dels {
			res.Done = append(res.Done, d.Ref) // a row already gone is deleted too
		}
	}
	if ups := byKind(writes, "update"); len(ups) > 0 {
		refs, rest, err := s.update(ctx, tx, ups)
		if err != nil {
			return nil, err
		}
		res.Updated += len(refs)
		res.Done = append(res.Done, refs...)
		res.wrote = append(res.wrote, refs...)
		// A row not updated either held the values already or is gone: only
		// those rows are looked up again.
		if len(rest) > 0 {
			missing, err := s.missing(ctx, tx, rest)
			if err != nil {
				return nil, err
			}
			res.Missing = append(res.Missing, missing...)
			gone := make(map[string]bool, len(missing))
			for _, m := range missing {
				gone[m] = true
			}
			for _, u := range rest {
				if !gone[u.Ref] {
					res.Done = append(res.Done, u.Ref)
				}
			}
		}
	}
	var ins []*write
	for _, w := range writes {
		if w.Kind == "insert" {
			ins = append(ins, w)
		}
	}
	if len(ins) == 0 {
		return res, nil
	}
	if len(ins) > 1 {
		bulk, err := s.insertBulk(ctx, tx, ins, res, known)
		if err != nil || bulk {
			return res, err
		}
	}
	b := &pgx.Batch{}
	for _, w := range ins {
		b.Queue(s.insertSQL(w.Vals), encodeJSON(w.Vals))
	}
	br := tx.SendBatch(ctx, b)
	for _, w := range ins {
		var key []byte
		if err := br.QueryRow().Scan(&key); err != nil {
			br.Close()
			return nil, err
		}
		if err := res.created(w.Ref, key); err != nil {
			br.Close()
			return nil, err
		}
	}
	return res, br.Close()
}

func (res *applyResult) created(ref string, key []byte) error {
	_, text, err := decodeKey(key)
	if err != nil {
		return err
	}
	res.createdKey(ref, text)
	return nil
}

// clone returns a copy of res that shares nothing it could change.
func (res *applyResult) clone() *applyResult {
	c := *res
	c.Created, c.Failed, c.Missing = slices.Clone(res.Created), slices.Clone(res.Failed), slices.Clone(res.Missing)
	c.Done, c.wrote = slices.Clone(res.Done), slices.Clone(res.wrote)
	return &c
}

// grow makes room for n more created rows.
func (res *applyResult) grow(n int) {
	res.Created = slices.Grow(res.Created, n)
	res.Done = slices.Grow(res.Done, n)
	res.wrote = slices.Grow(res.wrote, n)
}

// createdKey records that the write ref created the row of canonical key.
func (res *applyResult) createdKey(ref, key string) {
	res.Created = append(res.Created, [2]string{ref, key})
	res.Done = append(res.Done, ref)
	res.wrote = append(res.wrote, ref)
	res.Inserted++
}

// applyEach writes row by row, each under a savepoint: a row the node
// rejects (constraint, type) is recorded and the others go in.
func (s *side) applyEach(ctx context.Context, tx pgx.Tx, writes []*write) (*applyResult, error) {
	res := &applyResult{}
	for _, w := range writes {
		if _, err := tx.Exec(ctx, "SAVEPOINT tandem_row"); err != nil {
			return nil, err
		}
		one, err := s.applyBulk(ctx, tx, []*write{w}, nil)
		if err != nil {
			if !isRowError(err) {
				return nil, err
			}
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tandem_row"); err != nil {
				return nil, err
			}
			res.Failed = append(res.Failed, rowFailure(w.Ref, err))
			continue
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT tandem_row"); err != nil {
			return nil, err
		}
		res.Created = append(res.Created, one.Created...)
		res.Missing = append(res.Missing, one.Missing...)
		res.Done = append(res.Done, one.Done...)
		res.wrote = append(res.wrote, one.wrote...)
		res.Inserted += one.Inserted
		res.Updated += one.Updated
		res.Deleted += one.Deleted
	}
	return res, nil
}

func rowFailure(ref string, err error) applyError {
	f := applyError{Ref: ref, Reason: err.Error()}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		f.Reason, f.SQLState, f.Constraint = pg.Message, pg.Code, pg.ConstraintName
		if pg.Detail != "" {
			f.Reason += ": " + pg.Detail
		}
	}
	return f
}

// isRowError reports errors that one row's values cause: data exceptions
// (class 22) and integrity constraint violations (class 23).
func isRowError(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23"))
}

// retryable reports lock timeouts, deadlocks and serialization failures.
func retryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
}

func (s *side) deleteSQL() string {
	return fmt.Sprintf(`DELETE FROM %[1]s t
		USING jsonb_to_recordset($1::jsonb) a(ref text, key jsonb)
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, a.key) k
		WHERE %[2]s RETURNING a.ref`, s.ident, s.keyJoin("t", "k"))
}

// update sets each row's values over the row as it is and returns the
// refs of the rows it wrote, and the rows it did not; a row that would not
// change is not written (no dead tuple, no trigger call, no echo). An
// UPDATE's SET list is fixed, so rows go in one statement per set of
// columns they write, pipelined in one round trip.
func (s *side) update(ctx context.Context, tx pgx.Tx, ups []rowWrite) (wrote []string, rest []rowWrite, err error) {
	type group struct {
		cols []string
		rows []rowWrite
	}
	var groups []*group
	byCols := make(map[string]*group, 1)
	set := make([]byte, len(s.Cols)) // '1' where the row writes s.Cols[i]
	for _, u := range ups {
		for i, c := range s.Cols {
			_, ok := u.Vals[c]
			set[i] = '0'
			if ok {
				set[i] = '1'
			}
		}
		g := byCols[string(set)]
		if g == nil {
			g = &group{}
			for i, c := range s.Cols {
				if set[i] == '1' {
					g.cols = append(g.cols, c)
				}
			}
			byCols[string(set)] = g
			if len(g.cols) > 0 { // writing nothing, a row is left as it is
				groups = append(groups, g)
			}
		}
		if len(g.cols) == 0 {
			rest = append(rest, u)
			continue
		}
		g.rows = append(g.rows, u)
	}
	if len(groups) == 0 {
		return nil, rest, nil
	}
	b := &pgx.Batch{}
	for _, g := range groups {
		keys, vals := make([]byte, 0, 16*len(g.rows)), make([]byte, 0, 64*len(g.rows))
		keys, vals = append(keys, '['), append(vals, '[')
		for i, u := range g.rows {
			if i > 0 {
				keys, vals = append(keys, ','), append(vals, ',')
			}
			if u.Key == nil {
				keys = append(keys, "{}"...) // matches no row (null would fail the statement)
			} else {
				keys = appendJSON(keys, u.Key)
			}
			vals = append(vals, '{')
			for j, c := range g.cols {
				if j > 0 {
					vals = append(vals, ',')
				}
				vals = appendJSON(append(appendJSONString(vals, c), ':'), u.Vals[c])
			}
			vals = append(vals, '}')
		}
		b.Queue(s.updateSQL(g.cols), append(keys, ']'), append(vals, ']'), len(g.rows))
	}
	br := tx.SendBatch(ctx, b)
	for _, g := range groups {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, nil, err
		}
		ns, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			br.Close()
			return nil, nil, err
		}
		written := make([]bool, len(g.rows))
		for _, n := range ns {
			written[n-1] = true
			wrote = append(wrote, g.rows[n-1].Ref)
		}
		for i, u := range g.rows {
			if !written[i] {
				rest = append(rest, u)
			}
		}
	}
	return wrote, rest, br.Close()
}

// updateSQL updates cols of the rows whose keys are in the jsonb array $1
// from the values at the same positions of the array $2 ($3 long), and
// returns the positions (from 1) of the rows it wrote. Rows compare as
// records (record_ne), as whole rows did before: by each type's btree
// equality, NULL equal to NULL, and an error for a type without one (the
// = of box compares areas: a moved box would be taken for unchanged).
// Each array becomes typed rows in one jsonb_populate_recordset call (a
// call per row costs the node twice as much); the select list runs its
// set-returning functions in lockstep, which pairs a key, its values and
// its position.
func (s *side) updateSQL(cols []string) string {
	return fmt.Sprintf(`UPDATE %[1]s t SET (%[2]s) = ROW(%[3]s)
		FROM (SELECT jsonb_populate_recordset(NULL::%[1]s, $1::jsonb) AS k,
			jsonb_populate_recordset(NULL::%[1]s, $2::jsonb) AS v,
			generate_series(1, $3::int) AS n) x
		WHERE %[4]s AND record_ne(ROW(%[5]s), ROW(%[3]s))
		RETURNING x.n`, s.ident, strings.Join(quotedAll(cols), ", "), strings.Join(columnRefs("(x.v)", cols), ", "),
		s.keyJoin("t", "(x.k)"), strings.Join(columnRefs("t", cols), ", "))
}

// missing returns the refs of updates whose row does not exist.
func (s *side) missing(ctx context.Context, tx pgx.Tx, ups []rowWrite) ([]string, error) {
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT a.ref FROM jsonb_to_recordset($1::jsonb) a(ref text, key jsonb)
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, a.key) k
		WHERE NOT EXISTS (SELECT 1 FROM %[1]s t WHERE %[2]s)`, s.ident, s.keyJoin("t", "k")), encodeJSON(ups))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// insertSQL inserts the columns present in vals (the others keep their
// defaults: a generated key is generated) and returns the new row's key.
func (s *side) insertSQL(vals Values) string {
	names := slices.Sorted(maps.Keys(vals))
	cols, rcols := quotedAll(names), columnRefs("r", names)
	return fmt.Sprintf(`INSERT INTO %[1]s AS t (%[2]s) SELECT %[3]s FROM jsonb_populate_record(NULL::%[1]s, $1::jsonb) r RETURNING %[4]s`,
		s.ident, strings.Join(cols, ", "), strings.Join(rcols, ", "), s.keyObject("t"))
}

// marked is one write of an apply's marker.
type marked struct {
	Op   string          `json:"op"`
	Key  json.RawMessage `json:"key"`
	Vals Values          `json:"vals,omitempty"`
}

// markerDoc is the new column of an apply's marker row: the writes that
// changed a row, in the order they were made.
type markerDoc struct {
	Writes []marked `json:"writes"`
}

// summary is the old column of an apply's marker row: the columns its
// updates wrote, and whether it inserted or deleted rows.
func (d markerDoc) summary() Values {
	cols := map[string]bool{}
	rows := false
	for _, w := range d.Writes {
		if w.Op != opUpdate {
			rows = true
			continue
		}
		for col := range w.Vals {
			cols[col] = true
		}
	}
	names := slices.AppendSeq(make([]string, 0, len(cols)), maps.Keys(cols)) // [] when none, not null
	slices.Sort(names)
	return Values{"cols": names, "rows": rows}
}

// marker lists what an apply wrote, for the marker row that stands for the
// per-row echoes of its writes. In an initial sync a row it creates under
// a key it did not write (a key column drawn from its sequence or default)
// is not listed: an insert's echo only matters to application writes to
// the same key before it, and that key is new. A key the sync writes (one
// mapped from the other side) may have been inserted and deleted by an
// application since the chunk read the table: the echo keeps those two
// from streaming as a delete of the row the sync created.
func marker(writes []*write, res *applyResult, seeding bool, key []string) markerDoc {
	unlisted := func(w *write) bool {
		return seeding && w.Kind == "insert" && !hasAll(w.Vals, key)
	}
	if !slices.ContainsFunc(writes, func(w *write) bool { return !unlisted(w) }) {
		return markerDoc{}
	}
	byRef := make(map[string]*write, len(writes))
	for _, w := range writes {
		byRef[w.Ref] = w
	}
	created := make(map[string]string, len(res.Created))
	for _, c := range res.Created {
		created[c[0]] = c[1]
	}
	doc := markerDoc{Writes: make([]marked, 0, len(res.wrote))}
	for _, ref := range res.wrote {
		w := byRef[ref]
		if w == nil {
			continue
		}
		if unlisted(w) {
			continue
		}
		m := marked{Op: w.Kind, Vals: w.Vals, Key: json.RawMessage(ref)} // an update's or delete's ref is its key
		if w.Kind == "insert" {
			m.Key = json.RawMessage(created[ref])
		}
		doc.Writes = append(doc.Writes, m)
	}
	return doc
}
