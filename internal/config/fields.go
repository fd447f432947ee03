package config

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

func fieldKeys() []string  { return []string{"source", "target", "transform"} }
func transforms() []string { return append([]string{TransformRename}, namedTransforms()...) }
func namedTransforms() []string {
	return []string{TransformUppercase, TransformLowercase, TransformTrim,
		TransformToNumber, TransformToString, TransformSplitName}
}

// fields reads a sync's field mappings. ok is false when any of them had a problem.
func (d *decoder) fields(e entry, path string, syncLine int) ([]Field, bool) {
	const hint = "map at least one column, e.g. - { source: email, target: email }"
	switch {
	case isNull(e.val):
		d.probs.Add(lineOf(e, syncLine), path, "no fields: %s", hint)
		return nil, false
	case e.val.Kind != yaml.SequenceNode:
		d.probs.Add(e.val.Line, path, "want a list of fields, found %s", kindName(e.val))
		return nil, false
	case len(e.val.Content) == 0:
		d.probs.Add(e.val.Line, path, "no fields: %s", hint)
		return nil, false
	}
	var out []Field
	allOK := true
	sources, targets := map[string]int{}, map[string]int{}
	for j, n := range e.val.Content {
		p := fmt.Sprintf("%s[%d]", path, j)
		f, ok := d.field(deref(n), p)
		ok = d.mappedOnce(f.Source, sources, f.Line, p+".source", "source") && ok
		ok = d.mappedOnce(f.Target, targets, f.Line, p+".target", "target") && ok
		allOK = allOK && ok
		out = append(out, f)
	}
	return out, allOK
}

func (d *decoder) field(n *yaml.Node, path string) (Field, bool) {
	f := Field{Line: n.Line}
	obj, ok := d.object(n, path, fieldKeys())
	if !ok {
		return f, false
	}
	src, srcOK := d.columns(obj["source"], path+".source", f.Line, "source")
	tgt, tgtOK := d.columns(obj["target"], path+".target", f.Line, "target")
	tr, trOK := d.transform(obj["transform"].val, path+".transform")
	f.Source, f.Target, f.Transform = src, tgt, tr
	if srcOK && tgtOK && trOK {
		return f, d.arity(f, path)
	}
	return f, false
}

// columns reads a field's source or target: one column name or a list, never empty.
func (d *decoder) columns(e entry, path string, fieldLine int, side string) ([]string, bool) {
	if isNull(e.val) {
		d.probs.Add(lineOf(e, fieldLine), path, "missing: name the %s column, or a list of them", side)
		return nil, false
	}
	cols, ok := d.list(e.val, path)
	if ok && len(cols) == 0 {
		d.probs.Add(e.val.Line, path, "empty: name the %s column, or a list of them", side)
		return nil, false
	}
	return names(cols), ok
}

func (d *decoder) transform(v *yaml.Node, path string) (string, bool) {
	s, ok := d.scalar(v, path)
	if ok && !slices.Contains(transforms(), s) {
		d.probs.Add(v.Line, path, "unknown transform %q: use one of %s, or leave transform out to copy the value as it is",
			s, strings.Join(namedTransforms(), ", "))
		return s, false
	}
	return s, ok
}

// arity checks how many columns the field's transform takes and gives.
func (d *decoder) arity(f Field, path string) bool {
	want, what := 1, "transform "+f.Transform
	switch f.Transform {
	case TransformSplitName:
		want = 2
	case TransformRename:
		what = "a field without transform"
	}
	if len(f.Source) == 1 && len(f.Target) == want {
		return true
	}
	d.probs.Add(f.Line, path, "%s maps 1 source column to %d target column%s; this field has %d source and %d target",
		what, want, plural(want), len(f.Source), len(f.Target))
	return false
}

// mappedOnce checks that no column of one side is mapped by two fields, or twice by one.
// seen holds the line of each column already mapped on that side.
func (d *decoder) mappedOnce(cols []string, seen map[string]int, line int, path, side string) bool {
	ok := true
	for _, c := range cols {
		if first, dup := seen[c]; dup {
			d.probs.Add(line, path, "%s column %q is already mapped at line %d: map each column once", side, c, first)
			ok = false
			continue
		}
		seen[c] = line
	}
	return ok
}

// match reads the columns that pair up existing rows on both sides. Each must be mapped
// by a field; that is only checked when the fields themselves are fine, so one mistake
// does not show up twice.
func (d *decoder) match(v *yaml.Node, path string, fields []Field, fieldsOK bool) []string {
	if isNull(v) {
		return nil
	}
	cols, ok := d.list(v, path)
	if ok && len(cols) == 0 {
		d.probs.Add(v.Line, path, "lists no columns: list mapped columns that identify the same row on both sides, or leave match out")
	}
	if ok && fieldsOK {
		named := map[int]string{} // field index -> the match column that named it
		for _, c := range cols {
			i := fieldOf(fields, c.s)
			if i < 0 {
				d.probs.Add(c.line, path, "column %q is not mapped: match names a source or target column of this sync's fields (mapped: %s)",
					c.s, strings.Join(mappedColumns(fields), ", "))
			} else if f := fields[i]; len(f.Source) != 1 || len(f.Target) != 1 {
				d.probs.Add(c.line, path, "column %q is in a field that maps %d column(s) to %d: match takes columns of one-to-one fields",
					c.s, len(f.Source), len(f.Target))
			} else if first, dup := named[i]; dup {
				d.probs.Add(c.line, path, "column %q is the field %s -> %s again (named as %q): list each field once",
					c.s, f.Source[0], f.Target[0], first)
			} else {
				named[i] = c.s
			}
		}
	}
	return names(cols)
}

// fieldOf returns the index of the field that maps column c on either
// side, or -1.
func fieldOf(fields []Field, c string) int {
	return slices.IndexFunc(fields, func(f Field) bool { return slices.Contains(f.Source, c) || slices.Contains(f.Target, c) })
}

// mappedColumns lists the source and target columns of fields, each once, in order.
func mappedColumns(fields []Field) []string {
	var out []string
	for _, f := range fields {
		for _, c := range slices.Concat(f.Source, f.Target) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
