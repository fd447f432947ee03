package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the channel capture triggers notify.
const Channel = "tandem_changes"

// Defaults for the zero values of the Notifier's settings.
const (
	DefaultDebounce   = 5 * time.Millisecond
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// Notifier listens on every node and sends debounced [Wake] values on C. Set
// its fields, then call Start; the fields are not read after Start.
type Notifier struct {
	Nodes      map[string]string // node name -> DSN
	Debounce   time.Duration     // after a wake, gather for this long before the next (default 5ms)
	Logger     *slog.Logger      // nil: discard
	MinBackoff time.Duration     // first reconnect delay, before jitter (default 100ms)
	MaxBackoff time.Duration     // longest reconnect delay (default 10s)

	mu      sync.Mutex
	out     chan Wake          // made on first use, by C or Start
	cancel  context.CancelFunc // non-nil once started
	wg      sync.WaitGroup     // the collector and one listener per node
	running settings           // the settings Start resolved
}

// settings are the Notifier's fields with defaults applied.
type settings struct {
	debounce   time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	logger     *slog.Logger
}

// C delivers debounced wakes. It is the same channel before and after Start;
// it is never closed.
func (n *Notifier) C() <-chan Wake {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.outLocked()
}

func (n *Notifier) outLocked() chan Wake {
	if n.out == nil {
		n.out = make(chan Wake, 1)
	}
	return n.out
}

// Start connects one dedicated connection per node, LISTENs on [Channel],
// and returns once every node listens. On the first failure it stops
// everything it started and returns that error, which names the node. The
// notifier runs until Stop is called or ctx is cancelled.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.cancel != nil {
		n.mu.Unlock()
		return errors.New("starting notifier: already started (a Notifier starts once)")
	}
	configs, err := n.parseNodes()
	if err != nil {
		n.mu.Unlock()
		return err
	}
	n.running = n.resolveSettings()
	runCtx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	out := n.outLocked()
	events := make(chan event)
	ready := make(chan error, len(configs))
	// Added under mu, so a concurrent Stop (which reads cancel under mu)
	// never waits before these are counted.
	n.wg.Add(1 + len(configs))
	go func() {
		defer n.wg.Done()
		collect(runCtx, n.running.debounce, events, out)
	}()
	for _, c := range configs {
		go func() {
			defer n.wg.Done()
			n.listen(runCtx, c.node, c.config, events, ready)
		}()
	}
	n.mu.Unlock()

	var first error
	for range configs {
		if err := <-ready; err != nil && first == nil {
			first = err
			cancel() // the other nodes stop connecting
		}
	}
	if first != nil {
		n.Stop()
		return first
	}
	return nil
}

// Stop stops every goroutine, closes the connections and waits for both.
// It is safe to call more than once, before Start and after a failed Start.
func (n *Notifier) Stop() {
	n.mu.Lock()
	cancel := n.cancel
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	n.wg.Wait()
}

// nodeConfig is one node's parsed DSN.
type nodeConfig struct {
	node   string
	config *pgx.ConnConfig
}

// parseNodes parses every DSN up front, in node-name order, so a typo fails
// Start before any connection is made.
func (n *Notifier) parseNodes() ([]nodeConfig, error) {
	if len(n.Nodes) == 0 {
		return nil, errors.New("starting notifier: no nodes to listen on")
	}
	names := make([]string, 0, len(n.Nodes))
	for name := range n.Nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	configs := make([]nodeConfig, 0, len(names))
	for _, name := range names {
		// pgx redacts the password in its parse errors.
		cfg, err := pgx.ParseConfig(n.Nodes[name])
		if err != nil {
			return nil, fmt.Errorf("listening on node %s: parsing DSN: %w", name, err)
		}
		configs = append(configs, nodeConfig{node: name, config: cfg})
	}
	return configs, nil
}

func (n *Notifier) resolveSettings() settings {
	s := settings{debounce: n.Debounce, minBackoff: n.MinBackoff, maxBackoff: n.MaxBackoff, logger: n.Logger}
	if s.debounce <= 0 {
		s.debounce = DefaultDebounce
	}
	if s.minBackoff <= 0 {
		s.minBackoff = DefaultMinBackoff
	}
	if s.maxBackoff <= 0 {
		s.maxBackoff = DefaultMaxBackoff
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s
}
