package engine

import (
	"context"
	"errors"
)

// Repair fixes the drift a verify reported, by the sync's strategy.
func (e *Engine) Repair(ctx context.Context, syncID string, rep *VerifyReport) (Result, error) {
	return Result{}, errors.New("repair: not built yet")
}
