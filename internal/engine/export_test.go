package engine

// LookedAhead is how many windows have taken rows a look-ahead read.
func (e *Engine) LookedAhead() int64 { return e.lookedAhead.Load() }
