package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// How a verify walks the links and the tables.

// verifyInFlight is how many chunks are worked on at once (checksummed on
// the nodes, or looked up in the links), while the next chunk is read:
// enough to keep a node's cores busy while the slower side of a chunk
// finishes and its result is compared.
const verifyInFlight = 4

// walkLinks compares every linked pair, a chunk of links at a time.
func (v *verifier) walkLinks(ctx context.Context) error {
	return inFlight(ctx, verifyInFlight, v.readLinks, v.checksums, func(c chunkSums) error {
		if err := v.compareChunk(ctx, c); err != nil {
			return err
		}
		v.advance(len(c.page.keys[0]))
		return nil
	})
}

// chunkSums is a chunk of links and its checksums on each side.
type chunkSums struct {
	page linkPage
	sums [2]map[int64]bucketSum
}

// checksums checksums a chunk of links on both nodes at once.
func (v *verifier) checksums(ctx context.Context, p linkPage) (chunkSums, error) {
	c := chunkSums{page: p}
	err := bothSides(func(s mapping.Side) error {
		var err error
		c.sums[s], err = v.r.sides()[s].checksums(ctx, v.sums[s], jsonArray(p.keys[s]))
		return err
	})
	return c, err
}

// compareChunk compares the checksums of a chunk's buckets, then row by
// row the pairs of the buckets whose checksums differ.
func (v *verifier) compareChunk(ctx context.Context, c chunkSums) error {
	n := len(c.page.keys[0])
	v.rep.Compared += int64(n)
	var odd pairs
	for b := int64(0); b*verifyBucket < int64(n); b++ {
		src, tgt := c.sums[mapping.Source][b], c.sums[mapping.Target][b]
		v.present[mapping.Source] += src.rows
		v.present[mapping.Target] += tgt.rows
		if src == tgt {
			continue
		}
		for i := b * verifyBucket; i < min(int64(n), (b+1)*verifyBucket); i++ {
			if err := odd.addRaw(c.page.keys[mapping.Source][i], c.page.keys[mapping.Target][i]); err != nil {
				return err
			}
		}
	}
	if len(odd) == 0 {
		return nil
	}
	v.rep.RowByRow += int64(len(odd))
	drift, err := v.classify(ctx, odd)
	if err != nil {
		return err
	}
	return v.suspect(ctx, driftPairs(drift)...)
}

// suspect keeps drift found on first sight for the re-check, which runs
// once enough is kept.
func (v *verifier) suspect(ctx context.Context, ps ...pair) error {
	v.suspects = append(v.suspects, ps...)
	if len(v.suspects) >= v.recheckAt {
		return v.recheck(ctx)
	}
	return nil
}

// walkUnlinked finds the rows no link reaches: only in a table whose row
// count is not the number of its rows the links reached.
func (v *verifier) walkUnlinked(ctx context.Context) error {
	var counts [2]int64
	err := bothSides(func(s mapping.Side) error {
		var err error
		counts[s], err = v.r.sides()[s].rowCount(ctx)
		return err
	})
	if err != nil {
		return err
	}
	v.rep.SourceRows, v.rep.TargetRows = counts[mapping.Source], counts[mapping.Target]
	for _, s := range v.r.sides() {
		if counts[s.Which] == v.present[s.Which] {
			continue
		}
		v.total += counts[s.Which]
		if err := v.walkTable(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// keyChunk is a chunk of a table's keys (raw jsonb, in key order) and
// those of them no link names.
type keyChunk struct {
	keys, lone [][]byte
}

// walkTable reads a table's keys in key order, a chunk at a time, and
// keeps those no link names as suspects.
func (v *verifier) walkTable(ctx context.Context, s *side) error {
	read := func(ctx context.Context, send func([][]byte) bool) error {
		var after []byte
		for {
			keys, err := s.keyPage(ctx, after, v.chunk)
			if err != nil {
				return err
			}
			if !send(keys) || len(keys) < v.chunk {
				return nil
			}
			after = keys[len(keys)-1]
		}
	}
	lookUp := func(ctx context.Context, keys [][]byte) (keyChunk, error) {
		lone, err := v.r.e.unlinked(ctx, v.r.cfg.ID, s.Which, keys)
		return keyChunk{keys, lone}, err
	}
	return inFlight(ctx, verifyInFlight, read, lookUp, func(c keyChunk) error {
		v.rep.Compared += int64(len(c.lone))
		ps := make([]pair, len(c.lone))
		for i, k := range c.lone {
			key, err := decodeFlat(k)
			if err != nil {
				return fmt.Errorf("node %s: a key of %s: %w", s.Node, s.Table, err)
			}
			ps[i][s.Which] = key
		}
		if err := v.suspect(ctx, ps...); err != nil {
			return err
		}
		v.advance(len(c.keys))
		return nil
	})
}

// inFlight reads chunks with read, which sends each (send reports false
// once the walk has stopped), works on up to n of them at once with work,
// and hands each result to done, one at a time, in the order the chunks
// were read: drift is found, and listed, in key order. The first error
// stops the walk and is returned.
//
// Each chunk's result has a channel of its own, queued in read order: the
// queue holds the chunks in flight, so at most n are, however long one of
// them takes.
func inFlight[C, R any](ctx context.Context, n int, read func(context.Context, func(C) bool) error,
	work func(context.Context, C) (R, error), done func(R) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the reader and the work under way on an early return
	type result struct {
		r   R
		err error
	}
	queue := make(chan chan result, n-1) // and one taken, waited for
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	go func() {
		defer close(queue)
		readErr <- read(ctx, func(c C) bool {
			out := make(chan result, 1)
			select {
			case queue <- out:
			case <-ctx.Done():
				return false
			}
			wg.Go(func() {
				r, err := work(ctx, c)
				out <- result{r, err}
			})
			return true
		})
	}()
	for out := range queue {
		res := <-out
		if res.err == nil {
			res.err = done(res.r)
		}
		if res.err != nil {
			return res.err
		}
	}
	wg.Wait() // the reader is done (it closed the queue): no work starts now
	if err := <-readErr; err != nil {
		return err
	}
	return ctx.Err()
}
