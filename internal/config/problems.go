package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with the config, at a line of the file.
type Problem struct {
	Line int    // 1-based; 0 when no line applies
	Path string // where in the file, like "syncs[0].source.node"; empty for the whole file
	Msg  string // what is wrong and what to do; never holds a connection string
}

// Problems collects every problem; it is the error type Load returns.
type Problems struct {
	File string // the config path, printed before each line number
	List []Problem
}

// Add records a problem at line (1-based, or 0 for none) and path. Msg is built from
// format and args like fmt.Sprintf.
func (p *Problems) Add(line int, path, format string, args ...any) {
	p.List = append(p.List, Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Err returns nil when there are no problems, else p with its problems sorted by line
// (problems on the same line keep the order they were added in).
func (p *Problems) Err() error {
	if len(p.List) == 0 {
		return nil
	}
	slices.SortStableFunc(p.List, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return p
}

// Error returns one line per problem, in the form
//
//	tandem.yaml:12: syncs[0].source.node: unknown node "crmm" (known: crm, hubspot)
//
// The line number is left out when it is 0 and the path when it is empty.
func (p *Problems) Error() string {
	lines := make([]string, len(p.List))
	for i, pr := range p.List {
		lines[i] = p.format(pr)
	}
	return strings.Join(lines, "\n")
}

func (p *Problems) format(pr Problem) string {
	var b strings.Builder
	b.WriteString(p.File)
	if pr.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(pr.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if pr.Path != "" {
		b.WriteString(pr.Path)
		b.WriteString(": ")
	}
	b.WriteString(pr.Msg)
	return b.String()
}
