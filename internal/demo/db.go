package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// write runs a statement as an application would, on a connection of its
// own, and prints it the way psql shows input. The connection is closed
// after, so its backend publishes its statistics as it exits.
func (d *demo) write(ctx context.Context, db, sql string) (int64, error) {
	d.printf("    %s=# %s;\n", db, strings.ReplaceAll(sql, "\n", "\n    "+strings.Repeat(" ", len(db))+"-# "))
	conn, err := pgx.Connect(ctx, d.urls[db])
	if err != nil {
		return 0, fmt.Errorf("connecting to %s: %w", db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tag, err := conn.Exec(ctx, sql)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", db, err)
	}
	return tag.RowsAffected(), nil
}

// exists reports whether a query returns a row.
func (d *demo) exists(ctx context.Context, db, query string, args ...any) (bool, error) {
	rows, err := d.read[db].Query(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", db, err)
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// row returns a query's one row as "column=value ...", NULL for a null.
func (d *demo) row(ctx context.Context, db, query string, args ...any) (string, error) {
	cols, vals, err := d.first(ctx, db, query, args...)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(cols))
	for i := range cols {
		parts[i] = cols[i] + "=" + vals[i]
	}
	return strings.Join(parts, " "), nil
}

// record prints a query (flattened to one line) and its one row, a column
// per line, as psql's \x shows it.
func (d *demo) record(ctx context.Context, db, query string, args ...any) error {
	cols, vals, err := d.first(ctx, db, query, args...)
	if err != nil {
		return err
	}
	q := strings.Join(strings.Fields(query), " ")
	for i, a := range args { // show the query as it ran
		q = strings.ReplaceAll(q, fmt.Sprintf("$%d", i+1), fmt.Sprint(a))
	}
	d.printf("    %s=# %s;\n", db, q)
	tw := tabwriter.NewWriter(d.out, 2, 4, 1, ' ', 0)
	for i := range cols {
		fmt.Fprintf(tw, "      %s\t| %s\n", cols[i], vals[i])
	}
	return tw.Flush()
}

// first runs a query and returns its first row's columns and values as
// text. No row is an error.
func (d *demo) first(ctx context.Context, db, query string, args ...any) (cols, vals []string, err error) {
	// The simple protocol returns every value as text, as psql shows it.
	rows, err := d.read[db].Query(ctx, query, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", db, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", db, err)
		}
		return nil, nil, fmt.Errorf("%s: no row from %s", db, strings.Join(strings.Fields(query), " "))
	}
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	for _, b := range rows.RawValues() {
		v := "NULL"
		if b != nil {
			v = string(b)
		}
		vals = append(vals, v)
	}
	return cols, vals, rows.Err()
}

// waitFor polls check until it reports true, for at most waitTimeout, and
// returns how long that took.
func waitFor(ctx context.Context, what string, check func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := check()
		if err != nil {
			return 0, err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > waitTimeout {
			return 0, fmt.Errorf("waited %s for %s", waitTimeout, what)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

// expect fails unless got is want.
func expect(what, got, want string) error {
	if got == want {
		return nil
	}
	return errors.New(what + " is " + got + ", want " + want)
}
