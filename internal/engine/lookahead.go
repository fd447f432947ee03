package engine

import (
	"context"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/mapping"
)

// lookAhead reads the changes of one side's next window while the window
// before it applies and records: it pulls the side's node, then reads the
// change_log rows the next window will start with. Rows in change_log do
// not change, and those of one node are complete up to the last one read
// (each node's changes are taken in turn), so they are exactly what the
// next window would read there; the window itself is still cut as ever,
// after this one's echoes are in, and reads what follows them.
//
// It also reads the links of those changes' keys. Within one loop of a
// sync's windows only a window's record changes links (a conflict's
// settlement does too, but between such loops), so they are the next
// window's links, except for the keys the window before relinked (its
// record may come after the read): those the next window reads again.
type lookAhead struct {
	from, through int64
	rows          changeRows
	links         map[string]linkedKey // by key text of the side: the other side's key
	asked         map[string]bool      // the key texts whose links were read
	used          bool                 // a window took the rows
	pull          capture.PullResult   // its pull of the side's node
	pulled        bool                 // that pull succeeded
	pullDone      chan struct{}        // closed once the pull has ended (pull, pulled set)
	beforeApply   bool                 // started before an apply to the side: the next window pulls it again
	err           error
	done          chan struct{}
	cancel        context.CancelFunc
}

// lookAhead starts reading side s's changes after from.
func (r *syncRun) lookAhead(ctx context.Context, s *side, from int64) *lookAhead {
	ctx, cancel := context.WithCancel(ctx)
	a := &lookAhead{from: from, through: from, pullDone: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	sc := &side{Which: s.Which, Node: s.Node, Table: s.Table} // its own: the run goes on with s
	go func() {
		defer close(a.done)
		a.pull, a.err = r.e.pullUpTo(ctx, sc.Node, r.e.pullLimit(), r.cfg.ID)
		a.pulled = a.err == nil
		close(a.pullDone)
		if a.err != nil {
			return
		}
		if a.through, a.err = r.windowEnd(ctx, sc, from); a.err != nil {
			return
		}
		if a.rows, a.err = r.readChanges(ctx, sc, from, a.through); a.err != nil {
			return
		}
		a.asked = make(map[string]bool, len(a.rows.changes))
		var keys [2][]string
		for _, c := range a.rows.changes {
			if c.Op != opTruncate && !a.asked[c.Key] {
				a.asked[c.Key] = true
				keys[sc.Which] = append(keys[sc.Which], c.Key)
			}
		}
		links, err := r.loadLinks(ctx, keys)
		if a.links, a.err = links[sc.Which], err; err == nil {
			r.e.test.readAhead.Add(1)
		}
	}()
	return a
}

// unwritten reports whether the window will most likely write nothing to
// side s: the other side's window holds nothing but the sync's own markers
// (as its look-ahead read it), and no failed write waits for a retry. A
// look-ahead of s may then start before the window resolves. Should the
// window write s after all (match pairs a row s created with one the other
// side had), the look-ahead's rows still stand, and the next window pulls
// s again for the apply's marker.
func (r *syncRun) unwritten(w window, s mapping.Side) bool {
	if r.retrying {
		return false
	}
	from, through := w.bounds(s.Other())
	if from == through {
		return true
	}
	a := r.looked[s.Other()]
	if a == nil {
		return false
	}
	<-a.done
	return a.err == nil && a.from == from && a.through == through && len(a.rows.changes) == 0
}

// wait lets a read still under way end.
func (a *lookAhead) wait() {
	if a != nil {
		<-a.done
		a.cancel()
	}
}

// stop ends a read no window will take (a pull cut off is taken up again
// by the next one).
func (a *lookAhead) stop() {
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// windowChanges is loadChanges of side s's window (from, through], taking
// the rows a look-ahead of the run before already read.
func (r *syncRun) windowChanges(ctx context.Context, s *side, from, through int64) ([]change, error) {
	a := r.looked[s.Which]
	if a != nil {
		<-a.done
	}
	if a != nil && a.err != nil {
		r.e.logger().Debug("reading ahead failed; reading the window", "sync", r.cfg.ID, "node", s.Node, "err", a.err)
	}
	if a == nil || a.err != nil || a.from != from || a.through > through {
		return r.loadChanges(ctx, s, from, through)
	}
	r.e.test.lookedAhead.Add(1)
	a.used = true
	rows := a.rows
	if a.through < through {
		more, err := r.readChanges(ctx, s, a.through, through)
		if err != nil {
			return nil, err
		}
		rows.then(more)
	}
	return rows.expand()
}

// windowLinks is loadLinks for the window's keys, taking the links a
// look-ahead read for its changes, but for keys the run before relinked,
// or linked to a key it relinked.
func (r *syncRun) windowLinks(ctx context.Context, keys [2][]string) ([2]map[string]linkedKey, error) {
	var ask [2][]string
	var known [2]map[string]linkedKey
	for s := range keys {
		a := r.looked[s]
		if a == nil || !a.used {
			ask[s] = keys[s]
			continue
		}
		known[s] = make(map[string]linkedKey, len(keys[s]))
		for _, k := range keys[s] {
			l, linked := a.links[k]
			switch {
			case !a.asked[k] || r.relinkedBefore[s][k], linked && r.relinkedBefore[1-s][l.text]:
				ask[s] = append(ask[s], k)
			case linked:
				known[s][k] = l
			}
		}
	}
	out, err := r.loadLinks(ctx, ask)
	if err != nil {
		return out, err
	}
	for s := range known {
		for k, l := range known[s] {
			out[s][k] = l
		}
	}
	return out, nil
}
