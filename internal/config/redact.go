package config

import (
	"net/url"
	"strings"
)

// redacted stands in for a password.
const redacted = "xxxxx"

// RedactDSN returns dsn with its passwords replaced by xxxxx, for messages and logs. It
// reads URLs (postgres://user:pass@host/db?sslpassword=...) and key=value strings
// (host=h password='p w'). A string that is neither is replaced whole, since there is no
// telling where a password would be in it.
func RedactDSN(dsn string) string {
	switch {
	case strings.TrimSpace(dsn) == "":
		return dsn
	case isURL(dsn):
		return redactURL(dsn)
	}
	if kv, ok := redactKeyValue(dsn); ok {
		return kv
	}
	return redacted
}

// isURL reports whether dsn starts with a scheme and "://".
func isURL(dsn string) bool {
	scheme, _, ok := strings.Cut(dsn, "://")
	if !ok || scheme == "" {
		return false
	}
	for _, r := range scheme {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// redactURL hides the password of the user info and of query parameters. Passwords are
// often written without percent-encoding, so the user info runs to the last @ and every
// "password=" after a ? or & is hidden: a stray @ or ? hides too much, never too little.
func redactURL(dsn string) string {
	scheme, rest, _ := strings.Cut(dsn, "://")
	var b strings.Builder
	b.WriteString(scheme + "://")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, _, hasPassword := strings.Cut(rest[:at], ":")
		if hasPassword {
			b.WriteString(user + ":" + redacted)
		} else {
			b.WriteString(redactParams(rest[:at]))
		}
		b.WriteByte('@')
		rest = rest[at+1:]
	}
	b.WriteString(redactParams(rest))
	return b.String()
}

// redactParams hides the value of each secret parameter in s, a parameter being what
// follows a ? or &.
func redactParams(s string) string {
	var b strings.Builder
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '?' && s[i] != '&' {
			continue
		}
		seg := s[start:i]
		if k, _, hasValue := strings.Cut(seg, "="); start > 0 && hasValue {
			if name, err := url.QueryUnescape(k); err != nil || isSecretKey(name) {
				seg = k + "=" + redacted
			}
		}
		b.WriteString(seg)
		if i < len(s) {
			b.WriteByte(s[i])
		}
		start = i + 1
	}
	return b.String()
}

func isSecretKey(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword")
}

const spaces = " \t\n\r\f\v"

// redactKeyValue rewrites a libpq key=value string with its secret values hidden. ok is
// false when dsn is not such a string.
func redactKeyValue(dsn string) (string, bool) {
	var out []string
	for s := strings.TrimLeft(dsn, spaces); s != ""; s = strings.TrimLeft(s, spaces) {
		key, rest, found := strings.Cut(s, "=")
		key = strings.TrimRight(key, spaces)
		if !found || key == "" || strings.ContainsAny(key, spaces+`'\`) {
			return "", false
		}
		val, rest, ok := cutValue(strings.TrimLeft(rest, spaces))
		if !ok {
			return "", false
		}
		if isSecretKey(key) {
			val = redacted
		}
		out = append(out, key+"="+val)
		s = rest
	}
	return strings.Join(out, " "), len(out) > 0
}

// cutValue splits one libpq value off the front of s: 'quoted, with \' and \\' or bare up
// to the next space, with \ escaping the next byte. ok is false for an unclosed quote.
func cutValue(s string) (val, rest string, ok bool) {
	quoted := strings.HasPrefix(s, "'")
	start := 0
	if quoted {
		start = 1
	}
	for i := start; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case quoted && s[i] == '\'':
			return s[:i+1], s[i+1:], true
		case !quoted && strings.IndexByte(spaces, s[i]) >= 0:
			return s[:i], s[i:], true
		}
	}
	return s, "", !quoted
}
