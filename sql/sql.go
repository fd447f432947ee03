// Package sqlfiles embeds the SQL that tandem installs on nodes.
//
// node/NNNN_name.sql are the capture versions, applied in order by
// `tandem install`: a node records the version it has in
// tandem.capture_info and an install runs only the files above it, so a later
// release upgrades capture in place. Files are never edited once released;
// a change is a new file.
package sqlfiles

import "embed"

// Node holds node/NNNN_*.sql.
//
//go:embed node/*.sql
var Node embed.FS
