package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ReplicationURL returns the database's superuser URL for a logical
// replication connection (replication=database), as pglogrepl needs.
func (db *DB) ReplicationURL() string {
	u, err := url.Parse(db.URL)
	if err != nil {
		panic(err) // URLs are built by this package
	}
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	return u.String()
}

// DropSlotsAtCleanup drops every replication slot of db when the test
// ends, before the database itself is dropped: PostgreSQL refuses to drop
// a database that has logical slots, and a slot left in the shared cluster
// retains WAL for as long as the cluster runs. Call it after NewDB (cleanups
// run last first). Sessions still streaming from a slot are terminated.
func (db *DB) DropSlotsAtCleanup(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := db.dropSlots(ctx); err != nil {
			t.Errorf("pgtest: dropping the replication slots of %s: %v", db.Name, err)
		}
	})
}

func (db *DB) dropSlots(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, db.Cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT slot_name::text, pg_terminate_backend(active_pid) IS NOT NULL
		FROM pg_replication_slots WHERE database = $1`, db.Name)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name string
		var terminated bool
		err := r.Scan(&name, &terminated)
		return name, err
	})
	if err != nil || len(names) == 0 {
		return err
	}
	return db.DropSlots(ctx, names...)
}

// DropSlots drops replication slots of db once their sessions have
// released them: DROP_REPLICATION_SLOT ... WAIT (a replication command)
// waits for that, where pg_drop_replication_slot would fail while a
// terminated or closed session is still exiting.
func (db *DB) DropSlots(ctx context.Context, names ...string) error {
	rconn, err := pgconn.Connect(ctx, db.ReplicationURL())
	if err != nil {
		return err
	}
	defer rconn.Close(ctx)
	for _, n := range names {
		if _, err := rconn.Exec(ctx, "DROP_REPLICATION_SLOT "+pgx.Identifier{n}.Sanitize()+" WAIT").ReadAll(); err != nil {
			return fmt.Errorf("dropping slot %s: %w", n, err)
		}
	}
	return nil
}
