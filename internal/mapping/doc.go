// Package mapping converts a row's values between the two sides of a sync through the
// sync's configured fields (tandem.yaml syncs[].fields). It is pure Go: the engine decodes
// captured changes and current rows from jsonb, maps them here, and compares or writes the
// result.
//
// # Values
//
// Values are what encoding/json gives for a jsonb object decoded with
// [encoding/json.Decoder.UseNumber]: nil, bool, [encoding/json.Number], string, []any and
// map[string]any. Numbers stay json.Number so that a numeric column never loses digits on
// its way through float64, and [Equal] compares them by value ("1" equals "1.0"), because
// the two sides may spell the same number differently.
//
// # Fields and transforms
//
// A [Field] maps source columns to target columns through a transform. Forward is source
// to target; reverse is target to source. A transform with no declared reverse is the
// identity in the reverse direction (a DESIGN.md contract):
//
//	transform    forward                              reverse
//	(none)       copy                                 copy
//	uppercase    strings.ToUpper                      copy
//	lowercase    strings.ToLower                      copy
//	trim         strings.TrimSpace                    copy
//	to_number    text -> number                       to_string
//	to_string    number, boolean -> text              to_number
//	split_name   "Mary Ann Lee" -> "Mary", "Ann Lee"  join the non-empty parts with a space
//
// nil (SQL NULL) maps to nil everywhere. A value a transform cannot convert fails that
// field only: [Mapping.Map] returns the other fields' values together with one
// [*FieldError] per failed field, so one bad value never blocks the rest of a row.
//
// # Partial changes
//
// A change carries only the columns that changed. A field whose columns changed only in
// part (a target change to lastname alone, for a split_name field) still needs all of them
// to map: [Mapping.Needs] lists what to fetch from the current row before [Mapping.Map], and
// a column still absent is an error wrapping [ErrMissing].
//
// # In SQL
//
// [Field.SQL] writes a transform as SQL over a table's columns, so that `tandem verify`
// can checksum a table inside its database as the other side should hold it. The SQL is
// close to the Go transforms, not exact (ASCII whitespace, the database's case mapping):
// it only finds rows that may differ, and Map decides.
package mapping
