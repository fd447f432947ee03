package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// RepairKeys brings the rows of the given keys (per side: source, target)
// into step, the way a run would had their drift been captured: a pair
// whose mapped values differ is settled by the sync's conflict strategy
// (each overwritten value a sync_conflicts row), and a row whose partner is
// missing, or that has none, is created on the other side and linked.
// Repair never deletes: a row that exists on one side only is copied, not
// removed. The repair is one run (sync_runs trigger "repair") through the
// normal apply: cut off, it is redone, and nothing is written twice.
func (e *Engine) RepairKeys(ctx context.Context, syncID string, keys [2][]Values) (Result, error) {
	if len(keys[0])+len(keys[1]) == 0 {
		return Result{Idle: true}, nil
	}
	return e.runSync(ctx, syncID, "repair", false, &keys)
}

// Repair fixes the drift a verify listed (VerifyReport.Rows), by the
// sync's strategy: see RepairKeys. Rows held by an open manual conflict are
// left to `tandem conflicts resolve`. The keys go in runs of at most
// repairRun of them.
func (e *Engine) Repair(ctx context.Context, syncID string, rep *VerifyReport) (Result, error) {
	var total Result
	total.Idle = true
	var keys [2][]Values
	flush := func() error {
		res, err := e.RepairKeys(ctx, syncID, keys)
		total.add(res)
		keys = [2][]Values{}
		return err
	}
	for _, d := range rep.Rows {
		if d.Conflict != 0 {
			continue
		}
		if d.SourceKey != nil {
			keys[0] = append(keys[0], d.SourceKey)
		}
		if d.TargetKey != nil {
			keys[1] = append(keys[1], d.TargetKey)
		}
		if len(keys[0])+len(keys[1]) >= repairRun {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	return total, flush()
}

// repairRun bounds the keys one repair run takes.
const repairRun = 5000

// repairDoc is how a repair's keys are kept in sync_state while it runs.
type repairDoc struct {
	Repair struct {
		Source []Values `json:"source"`
		Target []Values `json:"target"`
	} `json:"repair"`
}

func encodeRepair(keys *[2][]Values) []byte {
	var d repairDoc
	d.Repair.Source, d.Repair.Target = keys[0], keys[1]
	return encodeJSONReflect(d)
}

// decodeRepair reads a pending repair's keys; numbers stay json.Number.
func decodeRepair(b []byte) (*[2][]Values, error) {
	var d repairDoc
	if err := decodeNumbers(b, &d); err != nil {
		return nil, fmt.Errorf("sync_state.pending_initial_upto: %w", err)
	}
	return &[2][]Values{d.Repair.Source, d.Repair.Target}, nil
}

// resolveRepair decides a repair: the current rows of the keys and of
// their linked partners, resolved as if each had changed on its side.
func (r *syncRun) resolveRepair(ctx context.Context, keys [2][]Values) (*plan, error) {
	p := &plan{}
	var texts [2][]string
	for s := range keys {
		for _, k := range keys[s] {
			texts[s] = append(texts[s], canonicalKey(k))
		}
	}
	links, err := r.loadLinks(ctx, texts)
	if err != nil {
		return nil, err
	}
	var ents []*entity
	seen := [2]map[string]bool{{}, {}}
	for s := range keys {
		side := mapping.Side(s)
		for i, k := range keys[s] {
			kt := texts[s][i]
			if seen[s][kt] {
				continue
			}
			e := &entity{}
			e.key[s], e.keyTxt[s] = k, kt
			if l, ok := links[s][kt]; ok && !seen[side.Other()][l.text] {
				e.key[side.Other()], e.keyTxt[side.Other()], e.linked = l.vals, l.text, true
				seen[side.Other()][l.text] = true
			}
			seen[s][kt] = true
			ents = append(ents, e)
		}
	}
	var rows [2]map[string]Values
	for s, sd := range r.sides() {
		var want []Values
		for _, e := range ents {
			if e.key[s] != nil {
				want = append(want, e.key[s])
			}
		}
		if rows[s], err = sd.fetchRows(ctx, sd.Pool, want); err != nil {
			return nil, err
		}
	}
	var unpaired [2][]*entity
	for _, e := range ents {
		for s := range e.key {
			if row, ok := rows[s][e.keyText(mapping.Side(s))]; ok {
				e.net[s] = &netChange{Side: mapping.Side(s), Key: e.keyText(mapping.Side(s)), KeyVals: e.key[s],
					Op: netUpsert, Vals: row, At: map[string]time.Time{}}
			}
		}
		present := [2]bool{e.net[0] != nil, e.net[1] != nil}
		if e.linked && present[0] != present[1] {
			// Linked to a row that is gone: the row there is created again.
			p.unlinks = append(p.unlinks, e.keyTexts())
			gone := mapping.Source
			if present[0] {
				gone = mapping.Target
			}
			e.key[gone], e.keyTxt[gone], e.linked = nil, "", false
		}
		if !e.linked {
			for s := range e.net {
				if e.net[s] != nil {
					unpaired[s] = append(unpaired[s], e)
				}
			}
		}
	}
	for s := range unpaired {
		if err := r.pairSeed(ctx, r.sides()[mapping.Side(s).Other()].Pool, p, mapping.Side(s), unpaired[s]); err != nil {
			return nil, err
		}
	}
	return r.decideExisting(ctx, p, ents)
}
