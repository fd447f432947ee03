package capture

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// isUndefinedTable reports whether err is SQLSTATE 42P01 (undefined_table):
// the node has no capture schema.
func isUndefinedTable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "42P01"
}
