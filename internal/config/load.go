package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, interpolates and validates the config file at path. getenv looks up
// environment variables for ${VAR}, usually os.LookupEnv; nil means none is set. When the
// file is not valid the error is a *Problems holding every problem found.
func Load(path string, getenv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data, getenv)
}

// Parse is Load for a file already read: path is used only in messages.
func Parse(path string, data []byte, getenv func(string) (string, bool)) (*Config, error) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	probs := &Problems{File: path}
	root := parseDocument(data, probs)
	if root == nil {
		return nil, probs.Err()
	}
	d := newDecoder(path, getenv, probs)
	d.config(root)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return d.cfg, nil
}

// parseDocument parses data into a node tree and returns its root, or nil when there is
// nothing to read. A YAML syntax error is one problem: nothing after it can be trusted.
func parseDocument(data []byte, probs *Problems) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			probs.Add(1, "", "the file is empty: it needs control, nodes and syncs")
		} else {
			addSyntaxError(probs, data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		probs.Add(extra.Line, "", "a second YAML document: the config is one document, so remove this one or the --- before it")
	case !errors.Is(err, io.EOF):
		addSyntaxError(probs, data, err)
		return nil
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		probs.Add(1, "", "the file is empty: it needs control, nodes and syncs")
		return nil
	}
	return root
}

// addSyntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find expected key")
// into a problem at the line where the file stops being valid YAML.
func addSyntaxError(probs *Problems, data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	reported := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, text, found := strings.Cut(rest, ": ")
		if n, convErr := strconv.Atoi(num); found && convErr == nil {
			reported, msg = n, text
		}
	}
	probs.Add(syntaxErrorLine(data, reported), "", "invalid YAML: %s; check the indentation, colons and quotes here and on the line before", msg)
}

// syntaxErrorLine finds the line of a syntax error: the line after the longest prefix of
// data that still parses. yaml.v3 reports the line where the enclosing block starts, and
// counts it from 0 for some errors and from 1 for others, so its line (reported) is only
// where the search stops: the error is never before it.
func syntaxErrorLine(data []byte, reported int) int {
	ends := lineEnds(data)
	for k := len(ends) - 1; k >= max(reported, 1); k-- {
		if parses(data[:ends[k-1]]) {
			return k + 1
		}
	}
	return max(reported, 1)
}

// lineEnds returns the offset just past each line of data.
func lineEnds(data []byte) []int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	return ends
}

// parses reports whether every document in data is valid YAML.
func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := dec.Decode(&n); {
		case errors.Is(err, io.EOF):
			return true
		case err != nil:
			return false
		}
	}
}
