package engine

import (
	"encoding/json"
	"unicode/utf8"
)

// Change rows are flat jsonb objects (column -> scalar) and keys are
// usually one column. Decoding them with encoding/json (reflection, a
// Decoder per value) was a fifth of the engine's CPU on a backlog, so the
// common shapes take a direct path here; anything else (nested values,
// escaped strings) falls back to encoding/json, which gives the same
// result.

// decodeFlat decodes a jsonb object like decodeJSON.
func decodeFlat(b []byte) (Values, error) {
	if v, ok := parseFlat(b); ok {
		return v, nil
	}
	return decodeJSON(b)
}

// decodeKey decodes a key object and returns its canonical text too.
func decodeKey(b []byte) (Values, string, error) {
	v, err := decodeFlat(b)
	if err != nil || v == nil {
		return v, "", err
	}
	return v, canonicalKey(v), nil
}

// parseFlat parses an object whose values are numbers, strings without
// escapes, true, false or null. ok is false for any other input.
func parseFlat(b []byte) (v Values, ok bool) {
	if b == nil {
		return nil, true
	}
	p := flatParser{b: b}
	p.space()
	if !p.byte('{') {
		return nil, false
	}
	v = Values{}
	p.space()
	if p.byte('}') {
		return v, p.end()
	}
	for {
		p.space()
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.byte(':') {
			return nil, false
		}
		p.space()
		x, ok := p.scalar()
		if !ok {
			return nil, false
		}
		v[k] = x
		p.space()
		if p.byte('}') {
			return v, p.end()
		}
		if !p.byte(',') {
			return nil, false
		}
	}
}

type flatParser struct {
	b []byte
	i int
}

func (p *flatParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *flatParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *flatParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string with no escapes and no control characters.
func (p *flatParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

func (p *flatParser) scalar() (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		for p.i < len(p.b) {
			c := p.b[p.i]
			if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
				break
			}
			p.i++
		}
		n := string(p.b[start:p.i])
		if !validNumber(n) {
			return nil, false
		}
		return json.Number(n), true
	case p.literal("true"):
		return true, true
	case p.literal("false"):
		return false, true
	case p.literal("null"):
		return nil, true
	}
	return nil, false
}

func (p *flatParser) literal(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// validNumber reports whether s is a JSON number: -?int frac? exp?.
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// plainString reports whether encoding/json writes s between quotes
// unchanged (SetEscapeHTML(false)): printable ASCII without '"' or '\'.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
