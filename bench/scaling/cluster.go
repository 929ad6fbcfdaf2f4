package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/pgproc"
)

// pgBinDir is where Debian's postgresql-15 package puts initdb and pg_ctl.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// cluster is a PostgreSQL cluster of this bench's own, on a free port of
// 127.0.0.1, in a temporary directory: every process of it serves the
// bench, so its CPU time is the bench's.
type cluster struct {
	dir  string
	port int
	// URL is the postgres database of the cluster, for -server.
	URL    string
	runAs  string // "postgres" when this process is root (initdb refuses root)
	pgCtl  string
	pmPID  int
	stdout *bytes.Buffer
}

// startCluster runs initdb and pg_ctl start. The caller must stop it.
func startCluster(ctx context.Context, binDir string) (*cluster, error) {
	initdb, pgCtl := filepath.Join(binDir, "initdb"), filepath.Join(binDir, "pg_ctl")
	for _, b := range []string{initdb, pgCtl} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s not found: run make deps (it installs postgresql-15), or pass -pg-bin, or -dedicated=false to use -server: %w", b, err)
		}
	}
	dir, err := os.MkdirTemp("", "i18-scaling-pg-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, pgCtl: pgCtl, stdout: &bytes.Buffer{}}
	cred, err := pgproc.PostgresCredential()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("running as root, initdb needs the postgres user: %w", err)
	}
	if cred != nil {
		c.runAs = "postgres"
	}
	if err := pgproc.Chown(cred, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := pgproc.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.port = port
	data := filepath.Join(dir, "data")
	if err := c.run(ctx, initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w", err)
	}
	// The server settings that matter for the figures are left at their
	// defaults (fsync, synchronous_commit, max_connections 100), as on
	// the shared server; only where it listens differs.
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s", port, dir)
	if err := c.run(ctx, pgCtl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %w\n%s", err, log)
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	conn, err := pgx.Connect(ctx, c.URL)
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`).Scan(new(int))
		_ = conn.Close(ctx)
	}
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("the cluster on port %d: %w", port, err)
	}
	pm, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		c.stop()
		return nil, err
	}
	first, _, _ := strings.Cut(string(pm), "\n")
	c.pmPID, _ = strconv.Atoi(strings.TrimSpace(first))
	return c, nil
}

func (c *cluster) run(ctx context.Context, bin string, args ...string) error {
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runAs, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, out.String())
	}
	return nil
}

// stop stops the cluster (fast shutdown) and removes its directory.
func (c *cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = c.run(ctx, c.pgCtl, "-D", filepath.Join(c.dir, "data"), "-m", "fast", "-w", "stop")
	os.RemoveAll(c.dir)
}

// backgroundProbe sums the CPU time of the cluster's processes other than
// client backends (the postmaster, WAL writer, checkpointer, background
// writer, autovacuum launcher and workers, ...), sampled every 200 ms so
// that short-lived autovacuum workers are counted until shortly before
// they exit.
type backgroundProbe struct {
	pmPID  int
	mu     sync.Mutex
	first  map[int]float64
	latest map[int]float64
	done   chan struct{}
	wg     sync.WaitGroup
}

func newBackgroundProbe(pmPID int) *backgroundProbe {
	p := &backgroundProbe{pmPID: pmPID, first: map[int]float64{}, latest: map[int]float64{}, done: make(chan struct{})}
	for pid, t := range p.read() {
		p.first[pid], p.latest[pid] = t, t
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	return p
}

func (p *backgroundProbe) sample() {
	now := p.read()
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, t := range now {
		p.latest[pid] = t
	}
}

// stop returns the CPU seconds spent since the probe started, by process
// kind ("walwriter", "checkpointer", "autovacuum worker", ...).
func (p *backgroundProbe) stop() map[string]float64 {
	close(p.done)
	p.wg.Wait()
	p.sample()
	kinds := map[string]float64{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, t := range p.latest {
		kinds[processKind(pid, p.pmPID)] += t - p.first[pid] // a process born during the run started at 0
	}
	delete(kinds, "")
	return kinds
}

// read returns the CPU seconds of the postmaster and of its children that
// are not client backends.
func (p *backgroundProbe) read() map[int]float64 {
	out := map[int]float64{p.pmPID: benchkit.ProcCPU(p.pmPID)}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || benchkit.ProcParent(pid) != p.pmPID {
			continue
		}
		if processKind(pid, p.pmPID) != "" {
			out[pid] = benchkit.ProcCPU(pid)
		}
	}
	return out
}

// kinds of background processes by their title (postgres: <title>).
var backgroundKinds = []string{"walwriter", "checkpointer", "background writer", "autovacuum launcher",
	"autovacuum worker", "logical replication launcher", "archiver", "walsender", "startup"}

var (
	kindMu    sync.Mutex
	kindCache = map[int]string{}
)

// processKind names a background process, "postmaster" for the
// postmaster, or "" for a client backend or a process that is gone.
func processKind(pid, pmPID int) string {
	if pid == pmPID {
		return "postmaster"
	}
	kindMu.Lock()
	defer kindMu.Unlock()
	if k, ok := kindCache[pid]; ok {
		return k
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	title, ok := strings.CutPrefix(strings.TrimRight(string(b), "\x00"), "postgres: ")
	if !ok {
		return "" // not titled yet (just forked): look again next time
	}
	k := ""
	for _, bk := range backgroundKinds {
		if strings.HasPrefix(title, bk) {
			k = bk
			break
		}
	}
	kindCache[pid] = k
	return k
}
