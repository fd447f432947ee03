package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/notifier"
)

// Daemon keeps syncs in step: it runs a sync when a NOTIFY from one of its
// nodes says there are changes (debounced, so a burst is one run), and at
// the sync's interval otherwise. NOTIFY is a hint; the interval poll and the
// queues are the truth.
type Daemon struct {
	Engine *Engine
	Syncs  []string // sync ids to run; empty: every sync
	// Debounce gathers a burst of notifications into one wake (notifier
	// default if 0).
	Debounce time.Duration
	// Ready, if set, is called once every node is listened to.
	Ready func()
	// PruneEvery is how often tandem.change_log is pruned
	// (DefaultPruneEvery if 0); the first time is when the daemon starts.
	PruneEvery time.Duration
}

// Run runs until ctx is cancelled. A run in hand when that happens is
// finished and committed first; then Run returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	e := d.Engine
	log := e.logger()
	syncs, err := d.selected()
	if err != nil {
		return err
	}
	dsns := map[string]string{}
	for _, s := range syncs {
		for _, n := range []string{s.Source.Node, s.Target.Node} {
			dsns[n] = e.Config.Nodes[n].DSN
		}
	}
	n := &notifier.Notifier{Nodes: dsns, Debounce: d.Debounce, Logger: log}
	if err := n.Start(ctx); err != nil {
		return err
	}
	defer n.Stop()
	log.Info("ready: listening for changes", "nodes", len(dsns), "syncs", len(syncs))
	if d.Ready != nil {
		d.Ready()
	}
	pruned := make(chan struct{})
	go func() { defer close(pruned); d.prune(ctx) }()
	defer func() { <-pruned }()
	// Runs are not cut off by a stop request: the batch in hand commits.
	runCtx := withStop(context.WithoutCancel(ctx), ctx.Done())
	due := map[string]time.Time{}
	for _, s := range syncs {
		due[s.ID] = time.Time{} // everything runs once at start
	}
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		for _, s := range syncs {
			if ctx.Err() != nil {
				return nil
			}
			if !due[s.ID].After(now) {
				d.runOne(runCtx, s.ID, "interval")
				due[s.ID] = time.Now().Add(s.Interval)
			}
			if due[s.ID].Before(next) {
				next = due[s.ID]
			}
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case w := <-n.C():
			timer.Stop()
			d.runNotified(ctx, runCtx, syncs, due, w.Nodes)
		case node := <-e.walWake():
			timer.Stop()
			nodes := map[string]bool{node: true}
			for more := true; more; {
				select {
				case other := <-e.walWake():
					nodes[other] = true
				default:
					more = false
				}
			}
			d.runNotified(ctx, runCtx, syncs, due, nodes)
		case <-timer.C:
		}
	}
}

// runNotified runs the syncs that have a side on one of nodes.
func (d *Daemon) runNotified(ctx, runCtx context.Context, syncs []*config.Sync, due map[string]time.Time, nodes map[string]bool) {
	for _, s := range syncs {
		if ctx.Err() != nil {
			return
		}
		if nodes[s.Source.Node] || nodes[s.Target.Node] {
			due[s.ID] = time.Now().Add(s.Interval)
			if d.runOne(runCtx, s.ID, "notify") {
				due[s.ID] = time.Now().Add(busyRetry) // the notified changes must not wait a whole interval
			}
		}
	}
}

// busyRetry is how soon a sync that another session held is tried again.
const busyRetry = 250 * time.Millisecond

// runOne runs a sync once and reports whether another session held it.
func (d *Daemon) runOne(ctx context.Context, id, trigger string) (busy bool) {
	res, err := d.Engine.RunSync(ctx, id, trigger)
	if err != nil {
		d.Engine.logger().Error("sync failed", "sync", id, "err", err)
	}
	return res.Busy
}

// selected returns the syncs to run, failing on an unknown id.
func (d *Daemon) selected() ([]*config.Sync, error) {
	if len(d.Syncs) == 0 {
		return d.Engine.Config.Syncs, nil
	}
	var out []*config.Sync
	for _, id := range d.Syncs {
		s, ok := d.Engine.Config.SyncByID(id)
		if !ok {
			return nil, fmt.Errorf("no sync %q in %s", id, d.Engine.Config.Path)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no syncs to run")
	}
	return out, nil
}
