package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// settledShare is one node's share of a settlement, recorded on the node
// with it (tandem.applied, sync_id "SYNC#conflict:ID") so that resolving
// again after a crash between the node's commit and the control
// database's does not write it twice: a re-created row is not created
// again.
type settledShare struct {
	Update  Values `json:"update,omitempty"`
	Delete  bool   `json:"delete,omitempty"`
	Insert  Values `json:"insert,omitempty"`
	Created Values `json:"created,omitempty"` // key of the re-created row
}

func (s settledShare) empty() bool { return s.Update == nil && !s.Delete && s.Insert == nil }

func settledID(syncID string, conflict int64) string {
	return fmt.Sprintf("%s#conflict:%d", syncID, conflict)
}

// settledBefore takes the sync's apply lock on this node and reports
// whether the node already committed its share of the conflict's
// settlement (filling in the key it created). A share committed with a
// different decision is an error: the nodes would disagree.
func (s *side) settledBefore(ctx context.Context, tx pgx.Tx, syncID string, conflict int64, share *settledShare) (bool, error) {
	// The sync's apply lock first, in a statement of its own: the read
	// below then takes its snapshot after an earlier attempt still
	// committing has finished.
	if _, err := tx.Exec(ctx, `SELECT `+applyLock, syncID, s.Which.String()); err != nil {
		return false, fmt.Errorf("taking the apply lock of sync %s: %w", syncID, err)
	}
	var b []byte
	err := tx.QueryRow(ctx, `SELECT result FROM tandem.applied WHERE sync_id = $1 AND side = $2`,
		settledID(syncID, conflict), s.Which.String()).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading tandem.applied: %w", err)
	}
	var before settledShare
	if err := decodeNumbers(b, &before); err != nil {
		return false, fmt.Errorf("reading tandem.applied: %w", err)
	}
	want := *share
	want.Created = before.Created
	if !bytes.Equal(encodeJSON(want), encodeJSON(before)) {
		return false, fmt.Errorf("conflict %d was already applied here with another decision (%s) before the resolution could be recorded: resolve it the same way", conflict, b)
	}
	share.Created = before.Created
	return true, nil
}

// recordSettled records this node's share in the same transaction as its writes.
func (s *side) recordSettled(ctx context.Context, tx pgx.Tx, syncID string, conflict int64, share *settledShare) error {
	_, err := tx.Exec(ctx, `INSERT INTO tandem.applied (sync_id, side, run_id, result) VALUES ($1, $2, $3, $4)`,
		settledID(syncID, conflict), s.Which.String(), conflict, encodeJSON(share))
	if err != nil {
		return fmt.Errorf("recording the settlement in tandem.applied: %w", err)
	}
	return nil
}

// forgetSettled deletes the nodes' records of a conflict's settlement once
// the control database has it resolved: a resolved conflict is never
// settled again, so they would only accumulate. A node that cannot be
// reached keeps its row, which is harmless; the next resolution there
// does not look at it.
func (r *syncRun) forgetSettled(ctx context.Context, conflict int64) {
	for _, s := range r.sides() {
		_, err := s.Pool.Exec(ctx, `DELETE FROM tandem.applied WHERE sync_id = $1 AND side = $2`,
			settledID(r.cfg.ID, conflict), s.Which.String())
		if err != nil {
			r.e.logger().Warn("could not delete a settled conflict's record", "node", s.Node, "conflict", conflict, "err", err)
		}
	}
}
