package capture_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// logged returns the change_log rows of node crm: for each queue id, how
// many times it was logged, and the inserted names in log order.
func logged(t *testing.T, ctl *pgtest.DB) (counts map[int64]int, names []string) {
	t.Helper()
	rows, err := ctl.Pool.Query(context.Background(),
		"SELECT queue_id, coalesce(new->>'name', '') FROM tandem.change_log WHERE node = 'crm' ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	counts = map[int64]int{}
	for rows.Next() {
		var id int64
		var name string
		require.NoError(t, rows.Scan(&id, &name))
		counts[id]++
		names = append(names, name)
	}
	require.NoError(t, rows.Err())
	return counts, names
}

func queueLen(t *testing.T, db *pgtest.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM tandem.change_queue").Scan(&n))
	return n
}

func TestReaderMovesEveryChangeOnceAndPrunes(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	ctx := context.Background()

	node.Exec(t, "INSERT INTO contacts (name) VALUES ('a'), ('b'), ('c')")
	node.Exec(t, "UPDATE contacts SET score = 1 WHERE name = 'b'")
	res, err := r.Pull(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 4, res.Rows)
	require.EqualValues(t, 4, res.Pruned, "the only consumer took everything, so the queue is pruned")
	require.Zero(t, queueLen(t, node))

	counts, names := logged(t, ctl)
	require.Len(t, counts, 4)
	require.Equal(t, []string{"a", "b", "c", ""}, names, "change_log keeps capture order")
	var op, key, newJSON, xid string
	var captured time.Time
	require.NoError(t, ctl.Pool.QueryRow(ctx, `SELECT op, keys::text, new::text, xid::text, captured_at
		FROM tandem.change_log ORDER BY id DESC LIMIT 1`).Scan(&op, &key, &newJSON, &xid, &captured))
	require.Equal(t, "update", op)
	require.Equal(t, `{"id": 2}`, key)
	require.Equal(t, `{"score": 1}`, newJSON)
	require.NotEmpty(t, xid)
	require.WithinDuration(t, time.Now(), captured, time.Minute)

	res, err = r.Pull(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Rows, "a second pull finds nothing new")
}

// A transaction that writes first and commits last must not be skipped,
// however many others commit in between and however often the reader runs.
func TestReaderNeverSkipsAnEarlyTransactionThatCommitsLate(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	ctx := context.Background()

	long, err := node.Pool.Begin(ctx)
	require.NoError(t, err)
	defer long.Rollback(ctx) // a failing assertion must not leave the pool waiting on it
	_, err = long.Exec(ctx, "INSERT INTO contacts (name) VALUES ('long-1')")
	require.NoError(t, err)

	for i := range 5 {
		node.Exec(t, "INSERT INTO contacts (name) VALUES ($1)", fmt.Sprintf("short-%d", i))
		res, err := r.Pull(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, res.Rows, "each short transaction is taken while the long one is open")
		require.Positive(t, res.InFlight)
	}
	_, err = long.Exec(ctx, "INSERT INTO contacts (name) VALUES ('long-2')")
	require.NoError(t, err)
	require.NoError(t, long.Commit(ctx))

	res, err := r.Pull(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Rows)
	counts, names := logged(t, ctl)
	require.Len(t, counts, 7)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	require.Equal(t, []string{"short-0", "short-1", "short-2", "short-3", "short-4", "long-1", "long-2"}, names)
	require.Zero(t, queueLen(t, node))
}

// PullUpTo stops after the batch that reaches its limit, and the next pull
// goes on from there; a row of the given origin still in the queue makes
// it take everything, whatever stands before that row.
func TestPullUpToStopsAtItsLimitButNotShortOfTheSyncsOwnRows(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	r.BatchSize = 3
	ctx := context.Background()
	insert := func(prefix string, n int, origin string) {
		t.Helper()
		require.NoError(t, pgx.BeginFunc(ctx, node.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('tandem.origin', $1, true)", origin); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO contacts (name) SELECT $1 || i FROM generate_series(1, $2::int) i", prefix, n)
			return err
		}))
	}
	pull := func(max int64, rows int64, cut bool) {
		t.Helper()
		res, err := r.PullUpTo(ctx, max, "s1")
		require.NoError(t, err)
		require.Equal(t, rows, res.Rows)
		require.Equal(t, cut, res.Cut)
	}

	insert("a", 10, "")
	pull(4, 6, true) // two batches of 3
	_, names := logged(t, ctl)
	require.Len(t, names, 6)
	pull(4, 4, false)
	insert("b", 2, "")
	pull(4, 2, false)
	counts, names := logged(t, ctl)
	require.Equal(t, []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "b1", "b2"}, names)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue row %d logged %d times", id, n)
	}

	// Another sync's rows do not hold it; the sync's own do.
	insert("c", 5, "")
	insert("other", 1, "s2")
	pull(1, 3, true)
	insert("own", 1, "s1")
	pull(1, 4, false) // the rest of the window open, then the one that holds the sync's row
	_, names = logged(t, ctl)
	require.Equal(t, []string{"c1", "c2", "c3", "c4", "c5", "other1", "own1"}, names[12:])
	require.Zero(t, queueLen(t, node))
}

// Property: with many writers committing in random order and transactions
// of random length, and a reader pulling (in small batches) all the while,
// every committed change lands in change_log exactly once and nothing of a
// rolled-back transaction does.
func TestReaderExactlyOnceUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			node, ctl := newNode(t), newControl(t)
			r := newReader(t, node, ctl)
			r.BatchSize = 7
			runWritersAndReader(t, node, ctl, r, 8, 25)
		})
	}
}

func runWritersAndReader(t *testing.T, node, ctl *pgtest.DB, r *capture.Reader, writers, txPerWriter int) {
	ctx := context.Background()
	var committed sync.Map // name -> true
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := range txPerWriter {
				if err := writeTx(ctx, node, rng, fmt.Sprintf("w%d-%d", w, i), &committed); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.Pull(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, err := r.Pull(ctx)
	require.NoError(t, err)

	counts, names := logged(t, ctl)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	got := map[string]int{}
	for _, n := range names {
		got[n]++
	}
	want := 0
	committed.Range(func(k, _ any) bool {
		want++
		require.Equal(t, 1, got[k.(string)], "committed insert %s logged %d times", k, got[k.(string)])
		return true
	})
	require.Len(t, names, want, "nothing but committed inserts is logged")
	require.Zero(t, queueLen(t, node), "everything taken is pruned")
}

// writeTx inserts one or two rows, sometimes holding the transaction open a
// while, sometimes rolling back.
func writeTx(ctx context.Context, db *pgtest.DB, rng *rand.Rand, name string, committed *sync.Map) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	names := []string{name + "a"}
	if rng.IntN(2) == 0 {
		names = append(names, name+"b")
	}
	for _, n := range names {
		if _, err := tx.Exec(ctx, "INSERT INTO contacts (name) VALUES ($1)", n); err != nil {
			return err
		}
		if rng.IntN(4) == 0 {
			// hold the transaction open while others commit and the reader reads
			if _, err := tx.Exec(ctx, "SELECT pg_sleep($1)", float64(rng.IntN(20))/1000); err != nil {
				return err
			}
		}
	}
	if rng.IntN(6) == 0 {
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, n := range names {
		committed.Store(n, true)
	}
	return nil
}

// A pull cut off at any point (a crash of the daemon) neither loses nor
// repeats a change: the cursor moves in the same transaction as the rows.
func TestReaderCrashAtAnyPointLosesAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	r.BatchSize = 3
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	want := 0
	cut := 0
	for i := range 40 {
		node.Exec(t, "INSERT INTO contacts (name) SELECT 'r' || $1::int || '-' || g FROM generate_series(1, $2::int) g", i, i%5+1)
		want += i%5 + 1
		cctx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
		_, err := r.Pull(cctx)
		cancel()
		if err != nil {
			cut++
			require.True(t, errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || isCanceled(err), "unexpected error: %v", err)
		}
	}
	_, err := r.Pull(ctx)
	require.NoError(t, err)
	counts, names := logged(t, ctl)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	require.Len(t, names, want)
	t.Logf("%d of 40 pulls were cut off", cut)
}

func isCanceled(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "57014" // query_canceled
}

// Two readers on the same node and control database never duplicate: the
// one that loses the race fails its batch.
func TestConcurrentReadersDoNotDuplicate(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	a, b := newReader(t, node, ctl), newReader(t, node, ctl)
	a.BatchSize, b.BatchSize = 5, 5
	ctx := context.Background()
	for i := range 20 {
		node.Exec(t, "INSERT INTO contacts (name) SELECT 'x' || $1::int || '-' || g FROM generate_series(1, 7) g", i)
		var wg sync.WaitGroup
		for _, r := range []*capture.Reader{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.Pull(ctx); err != nil {
					require.ErrorIs(t, err, capture.ErrCursorMoved)
				}
			}()
		}
		wg.Wait()
	}
	_, err := a.Pull(ctx)
	require.NoError(t, err)
	counts, names := logged(t, ctl)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	require.Len(t, names, 140)
}

func TestReaderOnNodeWithoutCaptureSaysSo(t *testing.T) {
	t.Parallel()
	node, ctl := pgtest.NewDB(t), newControl(t)
	_, err := newReader(t, node, ctl).Pull(context.Background())
	require.ErrorIs(t, err, capture.ErrNotInstalled)
	require.ErrorContains(t, err, "node crm")
}

// A pull that fails mid-window (here the control database rejects the second
// batch) leaves the window open; the next pull finishes that window first,
// then takes what came after, each change once and in capture order.
func TestReaderResumesAWindowLeftOpen(t *testing.T) {
	t.Parallel()
	node, ctl := newNode(t), newControl(t)
	r := newReader(t, node, ctl)
	r.BatchSize = 2
	ctx := context.Background()
	ctl.Exec(t, `CREATE TABLE reject (name text);
		CREATE FUNCTION reject_rows() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT 1 FROM reject WHERE name = NEW.new->>'name') THEN
				RAISE EXCEPTION 'rejected %', NEW.new->>'name';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER reject_rows BEFORE INSERT ON tandem.change_log FOR EACH ROW EXECUTE FUNCTION reject_rows();
		INSERT INTO reject VALUES ('c')`)

	node.Exec(t, "INSERT INTO contacts (name) VALUES ('a'), ('b'), ('c'), ('d'), ('e')")
	_, err := r.Pull(ctx)
	require.ErrorContains(t, err, "rejected c")
	var windowOpen bool
	var after int64
	require.NoError(t, ctl.Pool.QueryRow(ctx, "SELECT window_to IS NOT NULL, after_queue_id FROM tandem.cursors WHERE node = 'crm'").Scan(&windowOpen, &after))
	require.True(t, windowOpen, "the first batch committed, the window stays open")
	require.Positive(t, after)

	ctl.Exec(t, "DELETE FROM reject")
	node.Exec(t, "INSERT INTO contacts (name) VALUES ('f')")
	res, err := r.Pull(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 4, res.Rows, "c, d, e from the open window, then f")
	counts, names := logged(t, ctl)
	for id, n := range counts {
		require.Equal(t, 1, n, "queue id %d logged %d times", id, n)
	}
	require.Equal(t, []string{"a", "b", "c", "d", "e", "f"}, names)
	require.Zero(t, queueLen(t, node))
}
