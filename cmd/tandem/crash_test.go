package main_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const crashConfig = `control: ${CTL}
nodes:
  crm: { dsn: "${CRM}" }
  hubspot: { dsn: "${HUB}" }
syncs:
  - id: contacts
    source: { node: crm, table: public.contacts }
    target: { node: hubspot, table: public.hs_contacts }
    conflict: latest_wins
    interval: 200ms
    fields:
      - { source: full_name, target: [firstname, lastname], transform: split_name }
      - { source: email, target: email }
      - { source: phone, target: phone_number }
`

// setup is the built binary, a control database and two nodes with
// capture installed, and the config naming them.
type setup struct {
	bin, cfg      string
	env           []string
	ctl, crm, hub *pgtest.DB
}

func newSetup(t *testing.T) setup { return newSetupWith(t, "trigger") }

// newSetupWith captures hubspot with the given capture mode.
func newSetupWith(t *testing.T, hubCapture string) setup {
	s := setup{bin: buildTandem(t), ctl: pgtest.NewDB(t), crm: pgtest.NewDB(t), hub: pgtest.NewDB(t)}
	s.crm.Exec(t, `CREATE TABLE contacts (id bigserial PRIMARY KEY, full_name text, email text UNIQUE, phone text)`)
	s.hub.Exec(t, `CREATE TABLE hs_contacts (id bigserial PRIMARY KEY, firstname text, lastname text, email text UNIQUE, phone_number text);
		ALTER TABLE hs_contacts REPLICA IDENTITY FULL`)
	s.cfg = filepath.Join(t.TempDir(), "tandem.yaml")
	cfg := strings.Replace(crashConfig, `hubspot: { dsn: "${HUB}" }`, `hubspot: { dsn: "${HUB}", capture: `+hubCapture+` }`, 1)
	require.NoError(t, os.WriteFile(s.cfg, []byte(cfg), 0o600))
	if hubCapture == "wal" {
		s.hub.DropSlotsAtCleanup(t) // a killed daemon's walsender may still hold it
	}
	s.env = append(os.Environ(), "CTL="+s.ctl.URL, "CRM="+s.crm.URL, "HUB="+s.hub.URL)
	tandem(t, s.bin, s.env, "-c", s.cfg, "migrate")
	tandem(t, s.bin, s.env, "-c", s.cfg, "install", "crm")
	tandem(t, s.bin, s.env, "-c", s.cfg, "install", "hubspot")
	return s
}

// buildTandem builds the binary under test.
func buildTandem(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "tandem")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type daemon struct {
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan struct{}
}

// startDaemon starts `tandem run` and waits for its ready line.
func startDaemon(t *testing.T, bin string, env []string, cfg string) *daemon {
	cmd := exec.Command(bin, "-c", cfg, "run")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	d := &daemon{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				once.Do(func() { close(d.ready) })
			}
			if strings.Contains(sc.Text(), "level=ERROR") && !strings.Contains(sc.Text(), "context canceled") {
				t.Logf("daemon: %s", sc.Text())
			}
		}
	}()
	select {
	case <-d.ready:
	case <-d.done:
		t.Fatal("tandem run exited before it was ready")
	case <-time.After(time.Minute):
		t.Fatal("tandem run did not log ready within a minute")
	}
	return d
}

func tandem(t *testing.T, bin string, env []string, args ...string) string {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "tandem %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// TestKill9AtRandomPoints kills `tandem run` with SIGKILL at random moments
// while both sides are written, restarts it, and checks that once writes
// stop both tables hold the same data, each created row exactly once.
func TestKill9AtRandomPoints(t *testing.T) { kill9AtRandomPoints(t, newSetup(t)) }

// The same with hubspot captured from its WAL: the slot's position moves
// only after change_log has the changes, so a kill at any point loses and
// repeats nothing.
func TestKill9AtRandomPointsWithAWALNode(t *testing.T) {
	kill9AtRandomPoints(t, newSetupWith(t, "wal"))
}

// The same in windows of 16 changes: pulls stop part way, and windows are
// read ahead (on crm often before they resolve) while the one before
// applies, so kills land in those too. After the initial sync's hand-over
// pulls the writers' backlog, each window's apply puts its marker after
// the other side's backlog: the windows still take at most 16 changes a
// side, reading the sync's own rows after them.
func TestKill9AtRandomPointsInSmallWindows(t *testing.T) {
	s := newSetup(t)
	f, err := os.OpenFile(s.cfg, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("window: 16\n")
	require.NoError(t, errors.Join(err, f.Close()))
	kill9AtRandomPoints(t, s)
	// The daemon took the window: each run of the initial sync (of the rows
	// the writers made before it) read half a window of one side.
	var runs, most int
	require.NoError(t, s.ctl.Pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(max(synced), 0) FROM tandem.sync_runs WHERE trigger = 'initial'`).Scan(&runs, &most))
	require.Greater(t, runs, 1, "the initial sync ran in one chunk")
	require.LessOrEqual(t, most, 8)
	require.Empty(t, rowsOf(t, s.ctl, `SELECT concat_ws(' ', 'run', r.id, w.node, count(c.id)) FROM tandem.sync_runs r
		CROSS JOIN LATERAL (VALUES ('crm', 'public.contacts', r.source_from, r.source_through),
			('hubspot', 'public.hs_contacts', r.target_from, r.target_through)) w(node, tbl, after, upto)
		JOIN tandem.change_log c ON c.node = w.node AND c.table_name = w.tbl AND c.id > w.after AND c.id <= w.upto
		GROUP BY r.id, w.node HAVING count(c.id) > 16`), "windows of more than 16 changes")
}

func kill9AtRandomPoints(t *testing.T, s setup) {
	bin, env, cfg, ctl, crm, hub := s.bin, s.env, s.cfg, s.ctl, s.crm, s.hub

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var created atomic.Int64
	write := func(db *pgtest.DB, side string) {
		defer wg.Done()
		// Statements run under wctx, not ctx: a statement cut off by stop()
		// may still commit on the server after the writer returned, behind
		// the final runs. Once wg.Wait returns, every write has committed.
		wctx := context.Background()
		for i := 0; ctx.Err() == nil; i++ {
			var err error
			switch rand.IntN(4) {
			case 0, 1:
				n := created.Add(1)
				if side == "crm" {
					_, err = db.Pool.Exec(wctx, `INSERT INTO contacts (full_name, email, phone) VALUES ($1, $2, $3)`,
						fmt.Sprintf("Crm Person%d", n), fmt.Sprintf("c%d@x", n), fmt.Sprint(i))
				} else {
					_, err = db.Pool.Exec(wctx, `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Hub', $1, $2)`,
						fmt.Sprintf("Person%d", n), fmt.Sprintf("h%d@x", n))
				}
			case 2:
				if side == "crm" {
					_, err = db.Pool.Exec(wctx, `UPDATE contacts SET phone = $1 WHERE id = (SELECT id FROM contacts ORDER BY random() LIMIT 1)`, fmt.Sprint(i))
				} else {
					_, err = db.Pool.Exec(wctx, `UPDATE hs_contacts SET phone_number = $1 WHERE id = (SELECT id FROM hs_contacts ORDER BY random() LIMIT 1)`, "h"+fmt.Sprint(i))
				}
			case 3:
				if i%5 == 0 {
					table := map[string]string{"crm": "contacts", "hubspot": "hs_contacts"}[side]
					_, err = db.Pool.Exec(wctx, fmt.Sprintf(`DELETE FROM %s WHERE id = (SELECT id FROM %s ORDER BY random() LIMIT 1)`, table, table))
				}
			}
			if err != nil {
				t.Errorf("%s writer: %v", side, err)
				return
			}
		}
	}
	wg.Add(2)
	go write(crm, "crm")
	go write(hub, "hubspot")

	for round := 0; round < 8; round++ {
		d := startDaemon(t, bin, env, cfg)
		// Let it work for a random while, then kill it without warning.
		select {
		case <-time.After(time.Duration(50+rand.IntN(400)) * time.Millisecond):
		case <-d.done:
			t.Fatal("tandem run exited on its own")
		}
		require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
		<-d.done
		_ = d.cmd.Wait()
	}
	stop()
	wg.Wait()

	// Writes have stopped: a daemon run to completion converges both sides.
	for range 3 {
		tandem(t, bin, env, "-c", cfg, "run", "--once")
	}
	out := tandem(t, bin, env, "-c", cfg, "run", "--once")
	require.Contains(t, out, "sync contacts: 0 synced", "a run after convergence still found work")

	crmRows := rowsOf(t, crm, `SELECT full_name || '|' || email || '|' || coalesce(phone, '') FROM contacts ORDER BY email`)
	hubRows := rowsOf(t, hub, `SELECT concat_ws(' ', firstname, lastname) || '|' || email || '|' || coalesce(phone_number, '') FROM hs_contacts ORDER BY email`)
	if !assertEqualRows(t, crmRows, hubRows) {
		dumpHistory(t, ctl, crmRows, hubRows)
		t.FailNow()
	}
	require.NotEmpty(t, crmRows)
	var links int
	require.NoError(t, ctl.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tandem.links`).Scan(&links))
	require.Equal(t, len(crmRows), links, "one link per row: nothing created twice")
	t.Logf("%d rows on each side after 8 kills", len(crmRows))
}

func rowsOf(t *testing.T, db *pgtest.DB, q string) []string {
	rows, err := db.Pool.Query(context.Background(), q)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func assertEqualRows(t *testing.T, a, b []string) bool {
	return assert.Equal(t, a, b, "both sides hold the same data")
}

// dumpHistory logs what tandem recorded about rows that differ.
func dumpHistory(t *testing.T, ctl *pgtest.DB, a, b []string) {
	in := map[string]int{}
	for _, r := range a {
		in[r]++
	}
	for _, r := range b {
		in[r]--
	}
	for row, n := range in {
		if n == 0 {
			continue
		}
		email := strings.Split(row, "|")[1]
		t.Logf("row %q differs (%+d): history:", row, n)
		for _, h := range rowsOf(t, ctl, fmt.Sprintf(`SELECT concat_ws(' ', id, node, op, keys, old, new, origin, captured_at)
			FROM tandem.change_log WHERE keys IN (SELECT keys FROM tandem.change_log WHERE new->>'email' = '%[1]s' OR old->>'email' = '%[1]s')
			ORDER BY id`, email)) {
			t.Log("  ", h)
		}
		for _, h := range rowsOf(t, ctl, `SELECT concat_ws(' ', id, run_id, kind, source_key, target_key, resolution, kept, lost) FROM tandem.sync_conflicts ORDER BY id`) {
			t.Log("  conflict", h)
		}
		for _, h := range rowsOf(t, ctl, `SELECT concat_ws(' ', id, run_id, side, keys, reason, resolved_at) FROM tandem.sync_errors ORDER BY id`) {
			t.Log("  error", h)
		}
	}
}

// TestKill9DuringInitialSync kills `tandem run` with SIGKILL while it does
// a new sync's initial sync of tables that already hold rows (some on both
// sides, paired by email), with writes between the kills; once restarted,
// it finishes where it was: both tables hold the same rows, each once.
func TestKill9DuringInitialSync(t *testing.T) {
	s := newSetup(t)
	cfg := strings.Replace(crashConfigWith(t, s), "    conflict: latest_wins\n", "    conflict: latest_wins\n    match: [email]\n", 1)
	require.NoError(t, os.WriteFile(s.cfg, []byte(cfg), 0o600))
	s.crm.Exec(t, `INSERT INTO contacts (full_name, email, phone)
		SELECT 'Crm Person' || n, 'p' || n || '@x', n::text FROM generate_series(1, 150000) n`)
	s.hub.Exec(t, `INSERT INTO hs_contacts (firstname, lastname, email, phone_number)
		SELECT 'Crm', 'Person' || n, 'p' || n || '@x', n::text FROM generate_series(1, 10000) n;
		INSERT INTO hs_contacts (firstname, lastname, email) SELECT 'Hub', 'Person' || n, 'h' || n || '@x' FROM generate_series(1, 2000) n`)

	kills, during := 0, 0
	var seen int64 // rows the initial sync had done at the last kill
	for round := 0; round < 6; round++ {
		d := startDaemon(t, s.bin, s.env, s.cfg)
		// Once it has done a chunk more, kill it at a random moment.
		deadline := time.Now().Add(time.Minute)
		for {
			var done int64
			var under bool
			err := s.ctl.Pool.QueryRow(context.Background(), `SELECT initial_done, initial_phase IS NOT NULL
				FROM tandem.sync_state WHERE sync_id = 'contacts'`).Scan(&done, &under)
			if err == nil && (done > seen || !under) {
				seen = done
				break
			}
			require.True(t, time.Now().Before(deadline), "the initial sync made no progress for a minute")
			select {
			case <-d.done:
				t.Fatal("tandem run exited on its own")
			case <-time.After(5 * time.Millisecond):
			}
		}
		select {
		case <-time.After(time.Duration(rand.IntN(300)) * time.Millisecond):
		case <-d.done:
			t.Fatal("tandem run exited on its own")
		}
		require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
		<-d.done
		_ = d.cmd.Wait()
		kills++
		var under bool
		require.NoError(t, s.ctl.Pool.QueryRow(context.Background(),
			`SELECT coalesce(bool_or(initial_phase IS NOT NULL), false) FROM tandem.sync_state WHERE sync_id = 'contacts'`).Scan(&under))
		if under {
			during++
		}
		s.crm.Exec(t, `UPDATE contacts SET phone = 'k' || $1::int WHERE id = $2`, round, 1+round*7000)
		s.hub.Exec(t, `INSERT INTO hs_contacts (firstname, email) VALUES ('Between', 'between' || $1::int || '@x')`, round)
	}
	require.GreaterOrEqual(t, during, 2, "fewer than two kills came while the initial sync was under way: nothing was tested")

	for range 3 {
		tandem(t, s.bin, s.env, "-c", s.cfg, "run", "--once")
	}
	out := tandem(t, s.bin, s.env, "-c", s.cfg, "run", "--once")
	require.Contains(t, out, "sync contacts: 0 synced", "a run after convergence still found work")
	crmRows := rowsOf(t, s.crm, `SELECT full_name || '|' || email || '|' || coalesce(phone, '') FROM contacts ORDER BY email`)
	hubRows := rowsOf(t, s.hub, `SELECT concat_ws(' ', firstname, lastname) || '|' || email || '|' || coalesce(phone_number, '') FROM hs_contacts ORDER BY email`)
	require.True(t, assertEqualRows(t, crmRows, hubRows))
	require.Len(t, crmRows, 150000+2000+kills)
	var links int
	require.NoError(t, s.ctl.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tandem.links`).Scan(&links))
	require.Equal(t, len(crmRows), links, "one link per row: nothing created twice")
}

// crashConfigWith returns the setup's config file as written.
func crashConfigWith(t *testing.T, s setup) string {
	b, err := os.ReadFile(s.cfg)
	require.NoError(t, err)
	return string(b)
}
