// Package migrations embeds the goose migrations of the control database
// (schema tandem): runs, conflicts, links, cursors and the change log.
// `tandem migrate` applies them; see internal/control.
package migrations

import "embed"

// FS holds the NNNNN_*.sql goose migrations.
//
//go:embed *.sql
var FS embed.FS
