package config

import (
	"fmt"
	"strings"
)

// interpolate replaces ${VAR} and ${VAR:-default} in s and turns $$ into $. It returns the
// result and one message per reference it could not resolve. Messages name variables,
// never values, so a secret cannot leak through them.
func interpolate(s string, getenv func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	var errs []string
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				errs = append(errs, `unterminated "${": close it with "}", or write $$ for a literal $`)
				return b.String(), errs
			}
			val, msg := expand(s[i+2:i+2+end], getenv)
			if msg != "" {
				errs = append(errs, msg)
			}
			b.WriteString(val)
			i += end + 3
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), errs
}

// expand resolves the inside of one ${...}. It returns a message when it cannot.
func expand(expr string, getenv func(string) (string, bool)) (string, string) {
	name, def, hasDef := strings.Cut(expr, ":-")
	if !isEnvName(name) {
		return "", fmt.Sprintf("bad variable name %q in ${...}: use letters, digits and _, not starting with a digit; write $$ for a literal $", name)
	}
	val, set := getenv(name)
	switch {
	case set && (val != "" || !hasDef):
		return val, ""
	case hasDef:
		return def, ""
	default:
		return "", fmt.Sprintf("environment variable %s is not set: set it, or give a default with ${%s:-value}", name, name)
	}
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
