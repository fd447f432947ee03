package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree of one file, building a Config and collecting every
// problem on the way. It never stops at the first one.
type decoder struct {
	probs  *Problems
	getenv func(string) (string, bool)
	texts  map[*yaml.Node]text // interpolated scalars, so an aliased value is expanded and reported once
	cfg    *Config
	ids    map[string]int     // sync id -> line of its first use
	keys   map[tableID]keyUse // the first configured key of each table
	merges int                // mappings merged in with << so far; see maxMerges
}

// maxMerges bounds how many mappings << may merge in over the whole file. Merges of
// merges multiply, so without a bound a short file could keep the walk busy for hours.
const maxMerges = 1000

// text is the interpolated value of one scalar; ok is false when interpolation failed.
type text struct {
	s  string
	ok bool
}

// entry is one key and its value in a mapping. A key that is not in the mapping has nil
// nodes. merged marks pairs that came in through a << merge key.
type entry struct {
	key, val *yaml.Node
	merged   bool
}

func newDecoder(path string, getenv func(string) (string, bool), probs *Problems) *decoder {
	return &decoder{
		probs:  probs,
		getenv: getenv,
		texts:  map[*yaml.Node]text{},
		cfg:    &Config{Path: path, Nodes: map[string]*Node{}},
		ids:    map[string]int{},
		keys:   map[tableID]keyUse{},
	}
}

// deref follows aliases to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is missing or an empty value (nothing, ~ or null).
func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// lineOf returns the line of e's key, or fallback when the key is missing.
func lineOf(e entry, fallback int) int {
	if e.key == nil {
		return fallback
	}
	return e.key.Line
}

func kindName(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// entries returns the pairs of mapping n in file order, each key once. Pairs merged in
// with << come after the mapping's own and lose to them.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var out []entry
	seen := map[string]int{}
	for _, e := range d.pairs(n, path) {
		if e.key.Kind != yaml.ScalarNode {
			d.probs.Add(e.key.Line, path, "a key must be a plain name, found %s", kindName(e.key))
			continue
		}
		name := e.key.Value
		if first, dup := seen[name]; dup {
			if !e.merged {
				d.probs.Add(e.key.Line, path, "duplicate key %q: it is already set at line %d; keep one", name, first)
			}
			continue
		}
		seen[name] = e.key.Line
		out = append(out, e)
	}
	return out
}

// pairs returns the key/value pairs of mapping n, with the pairs of merge keys last.
func (d *decoder) pairs(n *yaml.Node, path string) []entry {
	var own, merged []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.merge(v, path)...)
			continue
		}
		own = append(own, entry{key: k, val: v})
	}
	return append(own, merged...)
}

// merge returns the pairs that a << key brings in: from one mapping or a list of them.
func (d *decoder) merge(v *yaml.Node, path string) []entry {
	var sources []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		sources = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, item := range v.Content {
			sources = append(sources, deref(item))
		}
	}
	var out []entry
	for _, src := range sources {
		if d.merges++; d.merges > maxMerges {
			if d.merges == maxMerges+1 {
				d.probs.Add(v.Line, path, "more than %d merges (<<) in the file: merge less, or write the keys out", maxMerges)
			}
			return out
		}
		if src.Kind != yaml.MappingNode {
			d.probs.Add(src.Line, path, "<< merges a mapping or a list of mappings, found %s", kindName(src))
			continue
		}
		for _, e := range d.pairs(src, path) {
			e.merged = true
			out = append(out, e)
		}
	}
	if len(sources) == 0 {
		d.probs.Add(v.Line, path, "<< merges a mapping or a list of mappings, found %s", kindName(v))
	}
	return out
}

// object reads mapping n whose keys must be among allowed. It reports unknown keys and
// returns false when n is not a mapping at all.
func (d *decoder) object(n *yaml.Node, path string, allowed []string) (map[string]entry, bool) {
	if n.Kind != yaml.MappingNode {
		d.probs.Add(n.Line, path, "want a mapping with keys %s, found %s", strings.Join(allowed, ", "), kindName(n))
		return nil, false
	}
	obj := map[string]entry{}
	for _, e := range d.entries(n, path) {
		if !slices.Contains(allowed, e.key.Value) {
			d.unknownKey(e.key, path, allowed)
			continue
		}
		obj[e.key.Value] = e
	}
	return obj, true
}

func (d *decoder) unknownKey(k *yaml.Node, path string, allowed []string) {
	if near := closest(k.Value, allowed); near != "" {
		d.probs.Add(k.Line, path, "unknown key %q: did you mean %q?", k.Value, near)
		return
	}
	d.probs.Add(k.Line, path, "unknown key %q: the keys here are %s", k.Value, strings.Join(allowed, ", "))
}

// scalar returns the interpolated text of v; "" when v is missing or null. ok is false
// when a problem was reported (v is not a single value, or a variable is unset), so the
// caller adds no second problem about the same value.
func (d *decoder) scalar(v *yaml.Node, path string) (string, bool) {
	if isNull(v) {
		return "", true
	}
	if v.Kind != yaml.ScalarNode {
		d.probs.Add(v.Line, path, "want a single value, found %s", kindName(v))
		return "", false
	}
	if t, done := d.texts[v]; done {
		return t.s, t.ok
	}
	s, errs := interpolate(v.Value, d.getenv)
	for _, msg := range errs {
		d.probs.Add(v.Line, path, "%s", msg)
	}
	d.texts[v] = text{s: s, ok: len(errs) == 0}
	return s, len(errs) == 0
}

// item is one string of a list, with its line.
type item struct {
	s    string
	line int
}

// list reads one column name or a list of them. Empty names are problems. ok is false
// when any problem was reported.
func (d *decoder) list(v *yaml.Node, path string) ([]item, bool) {
	switch {
	case isNull(v):
		return nil, true
	case v.Kind == yaml.ScalarNode:
		s, ok := d.scalar(v, path)
		if s == "" {
			return nil, ok
		}
		return []item{{s: s, line: v.Line}}, ok
	case v.Kind != yaml.SequenceNode:
		d.probs.Add(v.Line, path, "want a column name or a list of them, found %s", kindName(v))
		return nil, false
	}
	items, allOK := []item{}, true
	for j, n := range v.Content {
		n = deref(n)
		p := fmt.Sprintf("%s[%d]", path, j)
		s, ok := d.scalar(n, p)
		if ok && s == "" {
			d.probs.Add(n.Line, p, "empty column name: name a column or remove the entry")
			ok = false
		}
		if !ok {
			allOK = false
			continue
		}
		items = append(items, item{s: s, line: n.Line})
	}
	return items, allOK
}

func names(items []item) []string {
	if len(items) == 0 {
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.s
	}
	return out
}

// oneOf reads a value that must be one of allowed; missing or empty means def.
func (d *decoder) oneOf(v *yaml.Node, path, what string, allowed []string, def string) string {
	s, ok := d.scalar(v, path)
	switch {
	case !ok || s == "":
		return def
	case !slices.Contains(allowed, s):
		d.probs.Add(v.Line, path, "unknown %s %q: use one of %s", what, s, strings.Join(allowed, ", "))
		return def
	}
	return s
}

// count reads a whole number that may not be negative; missing means 0.
func (d *decoder) count(v *yaml.Node, path string) int64 {
	s, ok := d.scalar(v, path)
	if !ok || isNull(v) {
		return 0
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	switch {
	case err != nil:
		d.probs.Add(v.Line, path, "bad number %q: want a whole number like 1000000", s)
	case n < 0:
		d.probs.Add(v.Line, path, "%d is negative: use a positive number, or 0 for no limit", n)
	}
	return max(n, 0)
}

// size reads a byte count: a whole number with an optional unit kB, MB, GB
// or TB (powers of 1024, as PostgreSQL's settings count them).
func (d *decoder) size(v *yaml.Node, path string) int64 {
	s, ok := d.scalar(v, path)
	if !ok || isNull(v) {
		return 0
	}
	num := strings.TrimSpace(s)
	mult := int64(1)
	for i, unit := range []string{"kB", "MB", "GB", "TB"} {
		if strings.HasSuffix(num, unit) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, unit)), int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(num, "_", ""), 10, 64)
	switch {
	case err != nil:
		d.probs.Add(v.Line, path, "bad size %q: want a whole number of bytes, or one with a unit like 512MB or 10GB", s)
		return 0
	case n < 0:
		d.probs.Add(v.Line, path, "%s is negative: use a positive size, or 0 for no limit", s)
		return 0
	}
	return n * mult
}

// duration reads a Go duration like 5s or 24h. ok is false when v is missing or a
// problem was reported.
func (d *decoder) duration(v *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.scalar(v, path)
	if !ok || isNull(v) {
		return 0, false
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.probs.Add(v.Line, path, "bad duration %q: write a number and a unit, like 5s, 90m or 24h", s)
		return 0, false
	}
	return dur, true
}

// closest returns the word in words nearest to s when it is close enough to be a typo.
func closest(s string, words []string) string {
	best, bestDist := "", 0
	for _, w := range words {
		dist := editDistance(s, w)
		if dist*3 <= len(w) && (best == "" || dist < bestDist) {
			best, bestDist = w, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b: the edits
// (insert, delete, change, swap two neighbours) that turn one into the other.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
