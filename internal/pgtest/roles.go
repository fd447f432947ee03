package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Roles creates login roles without any privilege on the shared cluster.
// They are dropped when the test ends, after its databases (cleanups run
// last-registered first), so by then they own nothing.
func Roles(t *testing.T, names ...string) {
	t.Helper()
	c := Shared(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connecting to create roles: %v", err)
	}
	defer conn.Close(ctx)
	for _, n := range names {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{n}.Sanitize()+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"); err != nil {
			t.Fatalf("pgtest: creating role %s: %v", n, err)
		}
		t.Cleanup(func() {
			conn, err := pgx.Connect(ctx, c.URL("postgres"))
			if err == nil {
				_, err = conn.Exec(ctx, "DROP ROLE "+pgx.Identifier{n}.Sanitize())
				conn.Close(ctx)
			}
			if err != nil {
				t.Errorf("pgtest: dropping role %s: %v", n, err)
			}
		})
	}
}
