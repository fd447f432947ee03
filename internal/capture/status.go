package capture

import (
	"context"
	"fmt"
	"time"
)

// QueueStats describes a node's change queue cheaply (index endpoints only),
// so the daemon can check it on every pull even when the queue is huge.
// tandem.queue_status on the node gives the exact count.
type QueueStats struct {
	Rows      int64         // rows waiting (upper bound: queue ids between the oldest and newest row)
	OldestAge time.Duration // age of the oldest waiting change; 0 when empty
	Bytes     int64         // size of the queue table with its indexes
	Consumers int           // registered readers
	Armed     bool          // the next change will NOTIFY
}

// ReadQueueStats reads the queue statistics of a node.
func ReadQueueStats(ctx context.Context, q Querier) (QueueStats, error) {
	var s QueueStats
	var age *time.Duration
	err := q.QueryRow(ctx, `
		SELECT coalesce((SELECT max(id) FROM tandem.change_queue) - (SELECT min(id) FROM tandem.change_queue) + 1, 0),
		       now() - (SELECT captured_at FROM tandem.change_queue ORDER BY id LIMIT 1),
		       pg_total_relation_size('tandem.change_queue'),
		       (SELECT count(*) FROM tandem.consumers),
		       (SELECT last_value = 1 AND NOT is_called FROM tandem.notify_seq)`).Scan(&s.Rows, &age, &s.Bytes, &s.Consumers, &s.Armed)
	if err != nil {
		if isUndefinedTable(err) {
			return s, ErrNotInstalled
		}
		return s, fmt.Errorf("reading queue statistics: %w", err)
	}
	if age != nil {
		s.OldestAge = *age
	}
	return s, nil
}

// OverLimit returns one message per limit the queue exceeds (a zero limit is
// no limit).
func (s QueueStats) OverLimit(maxRows int64, maxAge time.Duration) []string {
	var out []string
	if maxRows > 0 && s.Rows > maxRows {
		out = append(out, fmt.Sprintf("change queue holds about %d rows, over the limit of %d: is `tandem run` draining this node?", s.Rows, maxRows))
	}
	if maxAge > 0 && s.OldestAge > maxAge {
		out = append(out, fmt.Sprintf("oldest queued change is %s old, over the limit of %s: is `tandem run` draining this node?", s.OldestAge.Round(time.Second), maxAge))
	}
	return out
}
