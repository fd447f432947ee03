package mapping

import (
	"errors"
	"fmt"
)

// ErrMissing is wrapped by the error for a column a field needs that the values lack:
// the caller mapped a partial change without first fetching what [Mapping.Needs] listed.
var ErrMissing = errors.New("missing from the values")

// FieldError says why one field could not be mapped. It keeps the field and the
// offending value, not just text, so the engine can record the row in sync_errors with
// what went wrong and carry on with the other fields and rows.
type FieldError struct {
	Field  *Field
	Column string // the column whose value failed; empty when the field itself is invalid
	Value  any    // the value that failed; nil for a missing column
	Reason string // what is wrong, naming the value
	Err    error  // the cause for errors.Is: ErrMissing for a missing column, else nil
}

// Error names the field's line and transform first, because that is where a user fixes
// the mapping, then the column and the value.
func (e *FieldError) Error() string {
	msg := fmt.Sprintf("field at line %d", e.Field.Line)
	if e.Field.Transform != "" {
		msg += " (" + e.Field.Transform + ")"
	}
	if e.Column != "" {
		msg += fmt.Sprintf(": column %q", e.Column)
	}
	return msg + ": " + e.Reason
}

// Unwrap returns the cause, so errors.Is(err, ErrMissing) tells a missing column from a
// bad value.
func (e *FieldError) Unwrap() error { return e.Err }
