package config

import (
	"strings"
	"unicode"
)

// maxIdentLen is PostgreSQL's limit on identifiers (NAMEDATALEN-1); longer names are
// silently truncated by the server, so a longer one would name some other table.
const maxIdentLen = 63

// isSyncID reports whether s matches ^[a-z0-9][a-z0-9_-]*$. Ids show up in logs, in
// tandem.sync_runs and on command lines, so they stay plain.
func isSyncID(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		alnum := ('a' <= r && r <= 'z') || ('0' <= r && r <= '9')
		if !alnum && (i == 0 || (r != '_' && r != '-')) {
			return false
		}
	}
	return true
}

// isTableName reports whether s is "name" or "schema.name" of unquoted identifiers.
func isTableName(s string) bool {
	schema, name, qualified := strings.Cut(s, ".")
	if qualified {
		return isIdent(schema) && isIdent(name)
	}
	return isIdent(s)
}

// isIdent reports whether s is a letter or _ followed by letters, digits and _.
func isIdent(s string) bool {
	if s == "" || len(s) > maxIdentLen {
		return false
	}
	for i, r := range s {
		if r != '_' && !unicode.IsLetter(r) && (i == 0 || !unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}
