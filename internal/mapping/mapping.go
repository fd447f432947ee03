package mapping

import (
	"fmt"
	"slices"

	"github.com/tandem-sync/tandem/internal/config"
)

// Side is one end of a sync. Fields read and write columns by side so that one code path
// serves both directions of a bidirectional sync.
type Side int

// The two sides of a sync, as tandem.yaml names them.
const (
	Source Side = iota
	Target
)

// Other returns the side a change on s is mapped to.
func (s Side) Other() Side {
	if s == Source {
		return Target
	}
	return Source
}

// String returns the side's name as tandem.yaml spells it, for messages and log keys.
func (s Side) String() string {
	switch s {
	case Source:
		return "source"
	case Target:
		return "target"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// Values are a row's (or a change's) column values, keyed by column name, as decoded from
// a jsonb object. An alias, so that decoded map[string]any values need no conversion.
type Values = map[string]any

// Field is one compiled config.Field.
type Field struct {
	Index     int      // position in the sync's fields, to relate errors and results back
	Line      int      // tandem.yaml line, so errors point at the field a user wrote
	Transform string   // one of the config.Transform constants
	Source    []string // the source columns, one for every transform
	Target    []string // the target columns: two for split_name, else one
}

// Columns returns the field's columns on side s.
func (f *Field) Columns(s Side) []string {
	if s == Source {
		return f.Source
	}
	return f.Target
}

// Map converts this field's columns on side from, read from vals, into the other side's
// columns. A column absent from vals is an error wrapping [ErrMissing]; a value the
// transform cannot convert is a [*FieldError] naming the field's line, transform, column
// and value.
func (f *Field) Map(from Side, vals Values) (Values, error) {
	out := make(Values, len(f.Columns(from.Other())))
	if err := f.MapInto(from, vals, out); err != nil {
		return nil, err
	}
	return out, nil
}

// MapInto is Map writing the other side's columns into out, which it
// leaves as it was on error.
func (f *Field) MapInto(from Side, vals, out Values) error {
	if err := f.mapInto(from, vals, out); err != nil {
		return err // not a typed nil in a non-nil error
	}
	return nil
}

func (f *Field) mapInto(from Side, vals, out Values) *FieldError {
	conv, reason := f.converter(from)
	if reason != "" {
		return &FieldError{Field: f, Reason: reason}
	}
	in, err := f.read(from, vals)
	if err != nil {
		return err
	}
	res, bad := conv(in)
	if bad != nil {
		col := f.Columns(from)[bad.at]
		return &FieldError{Field: f, Column: col, Value: in[bad.at], Reason: bad.reason}
	}
	for i, col := range f.Columns(from.Other()) {
		out[col] = res[i]
	}
	return nil
}

// read returns the field's values on side from, in column order.
func (f *Field) read(from Side, vals Values) ([]any, *FieldError) {
	cols := f.Columns(from)
	in := make([]any, len(cols))
	for i, col := range cols {
		v, ok := vals[col]
		if !ok {
			return nil, &FieldError{Field: f, Column: col, Reason: ErrMissing.Error(), Err: ErrMissing}
		}
		in[i] = v
	}
	return in, nil
}

// Mapping is a sync's compiled fields.
type Mapping struct {
	Fields []*Field
}

// Compile turns a sync's configured fields into a Mapping. The config has already
// checked transforms and column counts; a field that slipped past that fails in Map with
// a [*FieldError] rather than a panic.
func Compile(fields []config.Field) *Mapping {
	m := &Mapping{Fields: make([]*Field, len(fields))}
	for i, f := range fields {
		m.Fields[i] = &Field{
			Index:     i,
			Line:      f.Line,
			Transform: f.Transform,
			Source:    slices.Clone(f.Source),
			Target:    slices.Clone(f.Target),
		}
	}
	return m
}

// Columns returns every mapped column of side s, in field order, each once: the columns
// to read when a whole row is mapped.
func (m *Mapping) Columns(s Side) []string {
	return m.columns(m.Fields, s, nil)
}

// Touched returns the fields with at least one of the columns in cols on side s, in field
// order. Only the keys of cols matter: a change to NULL still touches its field.
func (m *Mapping) Touched(s Side, cols Values) []*Field {
	var out []*Field
	for _, f := range m.Fields {
		if hasAny(cols, f.Columns(s)) {
			out = append(out, f)
		}
	}
	return out
}

// hasAny reports whether vals has a value, even nil, for one of cols.
func hasAny(vals Values, cols []string) bool {
	for _, c := range cols {
		if _, ok := vals[c]; ok {
			return true
		}
	}
	return false
}

// Needs returns the columns of side s that the fields touched by cols need but cols
// lacks, in field order, each once, so a caller can fetch them from the current row
// before mapping a partial change.
func (m *Mapping) Needs(s Side, cols Values) []string {
	return m.columns(m.Touched(s, cols), s, cols)
}

// columns lists the side-s columns of fields that are not keys of skip, each once.
func (m *Mapping) columns(fields []*Field, s Side, skip Values) []string {
	var out []string
	for _, f := range fields {
		for _, c := range f.Columns(s) {
			if _, ok := skip[c]; !ok && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// Map maps every field touched by vals from side from into the other side. A field that
// fails adds one [*FieldError] and nothing to the result; the other fields still map, so
// one bad value never holds back the rest of the row.
func (m *Mapping) Map(from Side, vals Values) (Values, []*FieldError) {
	out := Values{}
	var errs []*FieldError
	for _, f := range m.Touched(from, vals) {
		if err := f.mapInto(from, vals, out); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errs
}
