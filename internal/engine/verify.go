package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// Verify compares a sync's two tables through its mapping without copying
// them, and reports the rows that differ (`tandem verify`).
//
// Rows are paired by tandem.links. The links are walked in chunks in
// source_key order (the index of their primary key); each chunk's source
// keys go to the source node and its target keys to the target node, and
// both nodes at once compute, in the database, one md5 per bucket of
// verifyBucket pairs over the mapped columns: the source side through the
// fields' SQL transforms ([mapping.Field.SQL]), the target side as it is
// (the other way round for a target_to_source sync). Only the pairs of a
// bucket whose checksums differ are read and compared in Go, through the
// mapping itself, which decides. Then each table's row count is compared
// with the number of its rows that links reach; only when they differ is
// the table's key walked, in chunks, to find the rows no link reaches.
//
// Applications may keep writing meanwhile: a row found different is a
// suspect until the sync's pending changes have been applied (Verify takes
// the sync's lock and runs it, as `tandem run --once` would) and the row is
// compared again. A row that still differs is drift, unless an application
// changed it again meanwhile: then it is compared again after another
// catch-up, up to maxRechecks rounds (VerifyReport.InFlight).
func (e *Engine) Verify(ctx context.Context, syncID string, opts VerifyOptions) (*VerifyReport, error) {
	start := time.Now()
	s, ok := e.Config.SyncByID(syncID)
	if !ok {
		return nil, fmt.Errorf("no sync %q in %s", syncID, e.Config.Path)
	}
	if err := e.init(ctx); err != nil {
		return nil, err
	}
	// A sync that has never run has no links to walk yet: its initial sync
	// first, or the walk would take every row for a suspect and stop
	// comparing the chunks after the first re-check had linked them.
	if need, err := e.needsInitial(ctx, s.ID); err != nil {
		return nil, err
	} else if need {
		release, err := e.lockCaughtUp(ctx, s, verifyLockWait)
		if err != nil {
			return nil, err
		}
		release()
	}
	r, err := e.newRun(s)
	if err != nil {
		return nil, err
	}
	if err := bothSides(func(s mapping.Side) error { return r.sides()[s].check(ctx) }); err != nil {
		return nil, err
	}
	v, err := newVerifier(ctx, r, opts)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.ID, err)
	}
	if err := v.verify(ctx); err != nil {
		return nil, fmt.Errorf("sync %s: verify: %w", s.ID, err)
	}
	v.rep.Elapsed = time.Since(start)
	return v.rep, nil
}

// DefaultVerifyChunk is how many linked pairs one checksum query compares
// on each node, and how many keys one step of a table walk reads.
const DefaultVerifyChunk = 10000

// DefaultVerifyListed bounds the drifting rows a report lists; its counts
// are exact beyond it.
const DefaultVerifyListed = 10000

// verifyBucket is how many pairs one checksum covers: a chunk's query
// returns a checksum per bucket, so a difference is narrowed to its
// bucket's rows without another query.
const verifyBucket = 100

// DefaultRecheckRows is how many suspect rows are re-checked at once: suspects
// never pile up past it, so memory stays bounded whatever the drift.
const DefaultRecheckRows = 5000

// maxRechecks bounds the rounds of applying pending changes and comparing
// again, for rows the application keeps changing.
const maxRechecks = 3

// verifyLockWait bounds how long a re-check waits for a run of the sync to
// finish before it applies the pending changes itself.
const verifyLockWait = 30 * time.Second

// VerifyOptions shape a verify.
type VerifyOptions struct {
	// ChunkRows is how many pairs one checksum query covers on each node
	// (DefaultVerifyChunk if 0).
	ChunkRows int
	// MaxListed bounds VerifyReport.Rows (DefaultVerifyListed if 0).
	MaxListed int
	// RecheckRows is how many suspects the walk keeps before it re-checks
	// them (DefaultRecheckRows if 0).
	RecheckRows int
	// Progress, if set, is called after each chunk with the rows done and
	// the rows known to be left to do so far (links first; a table walk,
	// when one is needed, adds the table's rows).
	Progress func(done, total int64)
}

// Kinds of drift.
const (
	DriftMissingOnSource = "missing_on_source" // a target row with no source row
	DriftMissingOnTarget = "missing_on_target" // a source row with no target row
	DriftDiffering       = "differing"         // both rows exist; mapped values differ
)

// Drift is one row the two tables disagree on.
type Drift struct {
	Kind string // one of the Drift constants
	// SourceKey and TargetKey are the row's keys: both for a linked pair
	// (the missing side's too, as the link has it), one for a row no link
	// reaches.
	SourceKey, TargetKey Values
	Linked               bool
	// Fields are the fields whose values differ, as source/target columns
	// (full_name/firstname+lastname), for DriftDiffering.
	Fields []string
	// Conflict is the open conflict that holds the entity (a manual
	// strategy's, waiting for `tandem conflicts resolve`), or 0.
	Conflict int64
}

// VerifyReport is what a verify found.
type VerifyReport struct {
	Sync string
	// Compared counts the rows verify looked at: every linked pair and every
	// row no link reaches.
	Compared int64
	// Row counts of the two tables (count(*)).
	SourceRows, TargetRows int64
	// The drift, by kind: exact counts.
	MissingOnSource, MissingOnTarget, Differing int64
	// Rows lists the drifting rows, at most VerifyOptions.MaxListed of them.
	Rows []Drift
	// CaughtUp counts rows that differed at first and were in step once the
	// sync's pending changes were applied: changes in flight, not drift.
	CaughtUp int64
	// InFlight counts rows that still differed after maxRechecks rounds of
	// applying pending changes, each time because the application had
	// changed them again: not drift as far as verify can tell (the sync will
	// take those changes), and not known to be in step either.
	InFlight int64
	// RowByRow counts the linked pairs read row by row because their
	// bucket's checksums differed: the drift among them, and rows whose
	// values render differently on the two sides though Go finds them equal.
	RowByRow int64
	Elapsed  time.Duration
}

// Drifted is the number of drifting rows.
func (r *VerifyReport) Drifted() int64 { return r.MissingOnSource + r.MissingOnTarget + r.Differing }

// Clean reports whether the tables hold the same mapped data.
func (r *VerifyReport) Clean() bool { return r.Drifted() == 0 }

// add counts a drifting row and lists it while the list has room.
func (r *VerifyReport) add(d Drift, listed int) {
	switch d.Kind {
	case DriftMissingOnSource:
		r.MissingOnSource++
	case DriftMissingOnTarget:
		r.MissingOnTarget++
	default:
		r.Differing++
	}
	if len(r.Rows) < listed {
		r.Rows = append(r.Rows, d)
	}
}

// verifier is one verify of one sync.
type verifier struct {
	r         *syncRun
	chunk     int
	listed    int
	recheckAt int // suspects kept before a re-check
	progress  func(done, total int64)
	rep       *VerifyReport
	sums      [2]string // the checksum query of each side
	// present counts, by side, the rows linked pairs reached.
	present     [2]int64
	suspects    []pair
	done, total int64
}

// pair is a row's keys on both sides: a link, or one key of a row no link
// reaches (nil on the other side).
type pair [2]Values

// pair is the drifting row's keys.
func (d Drift) pair() pair { return pair{d.SourceKey, d.TargetKey} }

// driftPairs is the keys of each drifting row.
func driftPairs(ds []Drift) pairs {
	out := make(pairs, len(ds))
	for i, d := range ds {
		out[i] = d.pair()
	}
	return out
}

// keyTexts is the canonical texts of the pairs' keys, by side.
func (ps pairs) keyTexts() [2][]string {
	var out [2][]string
	for _, p := range ps {
		for s, k := range p {
			if k != nil {
				out[s] = append(out[s], canonicalKey(k))
			}
		}
	}
	return out
}

func newVerifier(ctx context.Context, r *syncRun, opts VerifyOptions) (*verifier, error) {
	v := &verifier{r: r, chunk: opts.ChunkRows, listed: opts.MaxListed, recheckAt: opts.RecheckRows, progress: opts.Progress,
		rep: &VerifyReport{Sync: r.cfg.ID}}
	if v.recheckAt <= 0 {
		v.recheckAt = DefaultRecheckRows
	}
	if v.chunk <= 0 {
		v.chunk = DefaultVerifyChunk
	}
	if v.listed <= 0 {
		v.listed = DefaultVerifyListed
	}
	var numeric [2]map[string]bool
	err := bothSides(func(s mapping.Side) error {
		var err error
		numeric[s], err = r.sides()[s].numericColumns(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	exprs, err := v.mappedColumns(numeric)
	if err != nil {
		return nil, err
	}
	for _, s := range r.sides() {
		v.sums[s.Which] = checksumSQL(s, exprs[s.Which])
	}
	return v, nil
}

// mappedColumns returns, per side, the SQL of the values compared: on the
// side changes are mapped from (source, unless the sync only flows from
// the target), the fields' transforms of its columns; on the other side,
// its columns as they are; each through to_jsonb, in field order. numeric
// names each side's numeric columns.
func (v *verifier) mappedColumns(numeric [2]map[string]bool) ([2][]string, error) {
	var out [2][]string
	from := mapping.Source
	if !v.r.flows(mapping.Source) {
		from = mapping.Target
	}
	to := from.Other()
	for _, f := range v.r.m.Fields {
		cols := f.Columns(from)
		refs := columnRefs("t", cols)
		exprs, err := f.SQL(from, refs)
		if err != nil {
			return out, err
		}
		for i, x := range exprs {
			asIs := i < len(refs) && x == refs[i] // the column itself: a numeric if its type is
			out[from] = append(out[from], checksumValue(x, f.SQLNumeric(from) || asIs && numeric[from][cols[i]]))
		}
		cols = f.Columns(to)
		for i, ref := range columnRefs("t", cols) {
			out[to] = append(out[to], checksumValue(ref, numeric[to][cols[i]]))
		}
	}
	return out, nil
}

// checksumValue is how a checksum renders a mapped value: as to_jsonb
// does, a numeric without trailing fractional zeros, which the Go
// comparison ignores (1.50 is 1.5: numeric(10,2) against numeric).
func checksumValue(expr string, numeric bool) string {
	if numeric {
		return "to_jsonb(trim_scale(" + expr + "))"
	}
	return "to_jsonb(" + expr + ")"
}

// verify walks the links, then the rows no link reaches, then re-checks
// what is left of the suspects.
func (v *verifier) verify(ctx context.Context) error {
	if v.progress != nil { // the total only feeds the progress display
		n, err := v.r.e.linkCount(ctx, v.r.cfg.ID)
		if err != nil {
			return err
		}
		v.total = n
	}
	if err := v.walkLinks(ctx); err != nil {
		return err
	}
	if err := v.walkUnlinked(ctx); err != nil {
		return err
	}
	if err := v.recheck(ctx); err != nil {
		return err
	}
	if v.progress != nil { // the rows counted may have been more than those read since
		v.progress(v.done, v.done)
	}
	return nil
}

// advance records n more rows done.
func (v *verifier) advance(n int) {
	v.done += int64(n)
	if v.progress != nil {
		v.progress(v.done, max(v.done, v.total))
	}
}
