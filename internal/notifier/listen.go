package notifier

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

const listenSQL = "LISTEN " + Channel

// closeTimeout bounds the polite goodbye to a server that may be gone.
const closeTimeout = time.Second

// listen owns one node's connection for the notifier's life: it connects,
// reports the outcome on ready, then passes notifications on to events,
// reconnecting whenever the connection is lost.
func (n *Notifier) listen(ctx context.Context, node string, cfg *pgx.ConnConfig, events chan<- event, ready chan<- error) {
	log := n.running.logger
	conn, err := connectAndListen(ctx, node, cfg)
	ready <- err
	if err != nil {
		return
	}
	defer func() {
		if conn != nil {
			closeConn(ctx, conn)
		}
	}()
	log.Debug("notifier: listening", "node", node)
	for {
		err := receive(ctx, node, conn, events)
		closeConn(ctx, conn)
		conn = nil
		if ctx.Err() != nil {
			return
		}
		log.Warn("notifier: lost the LISTEN connection, reconnecting", "node", node, "err", err)
		if conn = n.reconnect(ctx, node, cfg); conn == nil {
			return
		}
		log.Info("notifier: listening again", "node", node)
		if !send(ctx, events, event{node: node, reconnected: true}) {
			return
		}
	}
}

// receive passes the node's notifications on until the connection fails or
// ctx ends, and returns why it stopped.
func receive(ctx context.Context, node string, conn *pgx.Conn, events chan<- event) error {
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notifications on node %s: %w", node, err)
		}
		if note.Channel != Channel {
			continue
		}
		if !send(ctx, events, event{node: node, table: note.Payload}) {
			return ctx.Err()
		}
	}
}

// reconnect retries connectAndListen with jittered exponential backoff until
// it succeeds (it returns the connection) or ctx ends (it returns nil).
func (n *Notifier) reconnect(ctx context.Context, node string, cfg *pgx.ConnConfig) *pgx.Conn {
	s := n.running
	for attempt := 0; ; attempt++ {
		if !sleep(ctx, backoff(attempt, s.minBackoff, s.maxBackoff)) {
			return nil
		}
		conn, err := connectAndListen(ctx, node, cfg)
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		s.logger.Warn("notifier: reconnecting failed", "node", node, "err", err, "attempt", attempt+1)
	}
}

// connectAndListen opens a connection to node and LISTENs on Channel.
func connectAndListen(ctx context.Context, node string, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listening on node %s: connecting: %w", node, err)
	}
	if _, err := conn.Exec(ctx, listenSQL); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("listening on node %s: %s: %w", node, listenSQL, err)
	}
	return conn, nil
}

// closeConn closes conn even when ctx is already cancelled, as it is on Stop.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx) // the connection is being dropped either way
}

// backoff is the delay before reconnect attempt number attempt (from 0):
// lo doubled per attempt, capped at hi, of which a random part up to half is
// taken off so that nodes dropped together do not reconnect in lockstep.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - rand.N(d/2+1)
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
