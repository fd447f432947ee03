package engine

// LookedAhead is how many windows have taken rows a look-ahead read.
func (e *Engine) LookedAhead() int64 { return e.test.lookedAhead.Load() }

// EarlyRecords is how many windows were recorded while their last apply
// committed (see earlyRecord).
func (e *Engine) EarlyRecords() int64 { return e.test.earlyRecords.Load() }

// ReadAhead is how many look-aheads have read their links.
func (e *Engine) ReadAhead() int64 { return e.test.readAhead.Load() }

// OnRecheck sets f to be called in each verify re-check round, once the
// sync has caught up and before the suspects are compared again.
func (e *Engine) OnRecheck(f func()) { e.test.recheck = f }

// OnWindow sets f to be called before each window's pull.
func (e *Engine) OnWindow(f func()) { e.test.window = f }

// ReadAfterWindows is how many windows have read the sync's own rows after
// them (withOwnAfter).
func (e *Engine) ReadAfterWindows() int64 { return e.test.readAfter.Load() }

// MarkersParsed is how many markers readLater has parsed.
func (e *Engine) MarkersParsed() int64 {
	e.markers.mu.Lock()
	defer e.markers.mu.Unlock()
	return e.markers.parsed
}

// SetMarkerCacheWrites sets how many parsed marker writes the engine keeps.
func (e *Engine) SetMarkerCacheWrites(n int) {
	e.markers.mu.Lock()
	defer e.markers.mu.Unlock()
	e.markers.budget = n
}

// MarkersCached is how many parsed markers the engine keeps.
func (e *Engine) MarkersCached() int {
	e.markers.mu.Lock()
	defer e.markers.mu.Unlock()
	return len(e.markers.byID)
}
