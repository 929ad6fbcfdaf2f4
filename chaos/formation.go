package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/pgproc"
	"github.com/shoplab/shoplab/service/postgres"
)

// A formation is a PostgreSQL primary and its standby managed by
// pg_auto_failover (the Debian packages pg-auto-failover-cli and
// postgresql-15-auto-failover, installed by scripts/install-deps.sh): a
// monitor and two data nodes, each a `pg_autoctl` process supervising its
// own PostgreSQL on a free port of 127.0.0.1, in a temporary directory.
// The failover scenario kills the primary's node (pg_autoctl and its
// postmaster, SIGKILL to the process group: the machine dies) and the
// monitor promotes the standby.

// FailoverTiming are the monitor's settings (pgautofailover.* GUCs, in
// milliseconds) that decide how soon a dead primary is replaced.
type FailoverTiming struct {
	HealthCheckPeriod              int `json:"health_check_period"`
	HealthCheckTimeout             int `json:"health_check_timeout"`
	HealthCheckMaxRetries          int `json:"health_check_max_retries"`
	HealthCheckRetryDelay          int `json:"health_check_retry_delay"`
	NodeConsideredUnhealthyTimeout int `json:"node_considered_unhealthy_timeout"`
	PrimaryDemoteTimeout           int `json:"primary_demote_timeout"`
	StartupGracePeriod             int `json:"startup_grace_period"`
}

// ProductionTiming is pg_auto_failover 2.0's defaults, what a production
// monitor runs with: a dead primary is noticed after 20 s without a report
// and failed health checks, then the standby waits up to 30 s for the old
// primary to demote itself before it takes writes.
var ProductionTiming = FailoverTiming{
	HealthCheckPeriod: 5000, HealthCheckTimeout: 5000, HealthCheckMaxRetries: 2, HealthCheckRetryDelay: 2000,
	NodeConsideredUnhealthyTimeout: 20000, PrimaryDemoteTimeout: 30000, StartupGracePeriod: 10000,
}

// TestTiming is the compressed run's: a failover in about 2-3 s on this
// machine. Each is 5-30 times shorter than production's; the keepers still
// report every second, so a node is unhealthy only after two missed
// reports and a failed health check.
var TestTiming = FailoverTiming{
	HealthCheckPeriod: 500, HealthCheckTimeout: 1000, HealthCheckMaxRetries: 1, HealthCheckRetryDelay: 200,
	NodeConsideredUnhealthyTimeout: 2000, PrimaryDemoteTimeout: 1000, StartupGracePeriod: 2000,
}

func (t FailoverTiming) settings() [][2]string {
	return [][2]string{
		{"health_check_period", strconv.Itoa(t.HealthCheckPeriod)},
		{"health_check_timeout", strconv.Itoa(t.HealthCheckTimeout)},
		{"health_check_max_retries", strconv.Itoa(t.HealthCheckMaxRetries)},
		{"health_check_retry_delay", strconv.Itoa(t.HealthCheckRetryDelay)},
		{"node_considered_unhealthy_timeout", strconv.Itoa(t.NodeConsideredUnhealthyTimeout)},
		{"primary_demote_timeout", strconv.Itoa(t.PrimaryDemoteTimeout)},
		{"startup_grace_period", strconv.Itoa(t.StartupGracePeriod)},
	}
}

// String lists the settings as the monitor has them.
func (t FailoverTiming) String() string {
	var b []string
	for _, s := range t.settings() {
		unit := "ms"
		if s[0] == "health_check_max_retries" {
			unit = ""
		}
		b = append(b, "pgautofailover."+s[0]+"="+s[1]+unit)
	}
	return strings.Join(b, " ")
}

// Formation is a running pg_auto_failover formation: Close stops it and
// removes its directory.
type Formation struct {
	// Dir holds the monitor's and the nodes' data directories and logs.
	Dir string
	// MonitorURL connects to the monitor's database (pg_auto_failover).
	MonitorURL string
	// Nodes are the data nodes, node1 first (the first primary).
	Nodes []*FormationNode
	// DBName is the application's database.
	DBName string
	// Steps are StartFormation's steps and their wall time.
	Steps []Step

	autoctl, pgctl string
	cred           *syscall.Credential
	// superuser is the clusters' superuser: the user initdb ran as.
	superuser string
	monitor   *autoctlProc
	mu        sync.Mutex
}

// FormationNode is one data node.
type FormationNode struct {
	Name string
	Port int
	// PGData is its data directory.
	PGData string

	proc *autoctlProc
}

type autoctlProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// ErrNoAutoctl says pg_auto_failover is not installed.
var ErrNoAutoctl = errors.New("chaos: pg_autoctl not found: run `make deps` (scripts/install-deps.sh installs pg_auto_failover: pg-auto-failover-cli and postgresql-15-auto-failover)")

// findAutoctl finds pg_autoctl and a pg_ctl of a PostgreSQL for which the
// pgautofailover extension is installed (the monitor needs it).
func findAutoctl() (autoctl, pgctl string, err error) {
	if autoctl, err = exec.LookPath("pg_autoctl"); err != nil {
		return "", "", ErrNoAutoctl
	}
	ctls, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(ctls, func(i, j int) bool { return pgMajor(ctls[i]) > pgMajor(ctls[j]) })
	for _, c := range ctls {
		v := filepath.Base(filepath.Dir(filepath.Dir(c)))
		if _, err := os.Stat("/usr/share/postgresql/" + v + "/extension/pgautofailover.control"); err == nil {
			return autoctl, c, nil
		}
	}
	return "", "", fmt.Errorf("%w (no PostgreSQL with the pgautofailover extension under /usr/lib/postgresql)", ErrNoAutoctl)
}

func pgMajor(pgctl string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgctl))))
	return n
}

// StartFormation creates and starts a monitor with timing, a primary and
// a synchronous standby, with the database dbName, migrated (the service's
// migrations) and seeded by seed (which runs on the primary before the
// standby is cloned from it). It fails, leaving nothing behind, when
// pg_autoctl is missing or any step fails. pg_autoctl refuses to run as
// root: as root, every pg_autoctl runs as the user postgres (the clusters'
// superuser); otherwise as the current user, who is then the superuser.
func StartFormation(ctx context.Context, label string, timing FailoverTiming, dbName string, seed func(ctx context.Context, dsn string) error) (_ *Formation, err error) {
	autoctl, pgctl, err := findAutoctl()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "shoplab-"+label+"-")
	if err != nil {
		return nil, err
	}
	f := &Formation{Dir: dir, DBName: dbName, autoctl: autoctl, pgctl: pgctl}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	mark := time.Now()
	step := func(name string) {
		f.Steps = append(f.Steps, Step{Name: name, Seconds: time.Since(mark).Seconds()})
		mark = time.Now()
	}
	f.superuser = "postgres"
	if os.Geteuid() != 0 {
		if u, err := user.Current(); err == nil {
			f.superuser = u.Username
		}
	} else {
		if f.cred, err = pgproc.PostgresCredential(); err != nil {
			return nil, fmt.Errorf("chaos: pg_autoctl refuses root and there is no user postgres: %w", err)
		}
		if err := pgproc.Chown(f.cred, dir); err != nil {
			return nil, err
		}
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = pgproc.FreePort(); err != nil {
			return nil, err
		}
	}
	// The monitor.
	if err := f.autoctlRun(ctx, "create", "monitor", "--pgctl", pgctl, "--pgdata", f.path("monitor"),
		"--pgport", strconv.Itoa(ports[0]), "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"); err != nil {
		return nil, err
	}
	step("create monitor")
	if f.monitor, err = f.start("monitor", "run", "--pgdata", f.path("monitor")); err != nil {
		return nil, err
	}
	f.MonitorURL = fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", ports[0])
	admin := fmt.Sprintf("postgres://%s@127.0.0.1:%d/pg_auto_failover?sslmode=disable", url.PathEscape(f.superuser), ports[0])
	if err := waitConnect(ctx, admin, 30*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: monitor: %w (log %s)", err, f.path("monitor.log"))
	}
	if err := setTiming(ctx, admin, timing); err != nil {
		return nil, err
	}
	step("start monitor")
	// The nodes: node1 becomes the primary; seeded before node2 is cloned.
	for i, name := range []string{"node1", "node2"} {
		n := &FormationNode{Name: name, Port: ports[1+i], PGData: f.path(name)}
		// Listed before it exists: Close stops a postmaster a failed
		// create left behind.
		f.mu.Lock()
		f.Nodes = append(f.Nodes, n)
		f.mu.Unlock()
		if err := f.autoctlRun(ctx, "create", "postgres", "--pgctl", pgctl, "--pgdata", n.PGData,
			"--pgport", strconv.Itoa(n.Port), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
			"--name", name, "--dbname", dbName, "--auth", "trust", "--no-ssl",
			"--monitor", f.MonitorURL); err != nil {
			return nil, err
		}
		step("create " + name)
		p, err := f.start(name, "run", "--pgdata", n.PGData)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		n.proc = p
		f.mu.Unlock()
		want := map[string]string{"node1": "single"}
		if i == 1 {
			want = map[string]string{"node1": "primary", "node2": "secondary"}
		}
		if err := f.waitStates(ctx, want, 60*time.Second); err != nil {
			return nil, err
		}
		// create left the state behind it; run starts PostgreSQL again.
		if err := waitConnect(ctx, f.nodeURL(n), 30*time.Second); err != nil {
			return nil, fmt.Errorf("chaos: %s: %w (log %s)", name, err, f.path(name+".log"))
		}
		step("start " + name)
		if i == 0 {
			dsn := f.nodeURL(n)
			if err := migrate(ctx, dsn); err != nil {
				return nil, fmt.Errorf("chaos: migrate the primary: %w", err)
			}
			if seed != nil {
				if err := seed(ctx, dsn); err != nil {
					return nil, fmt.Errorf("chaos: seed the primary: %w", err)
				}
			}
			// pg_basebackup (node2's create) asks for a spread checkpoint,
			// which paces its writes: 100 ms a dirty buffer when it is
			// ahead of schedule, some 25 s for a fresh seed. Written now,
			// they leave it nothing to pace.
			if err := checkpoint(ctx, dsn); err != nil {
				return nil, fmt.Errorf("chaos: checkpoint the primary: %w", err)
			}
			step("migrate and seed")
		}
	}
	return f, nil
}

func migrate(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	return postgres.Migrate(ctx, pool, "up", discard{})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func checkpoint(ctx context.Context, dsn string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, "CHECKPOINT")
	return err
}

// setTiming sets the monitor's failover timing (ALTER SYSTEM, reload).
func setTiming(ctx context.Context, dsn string, t FailoverTiming) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, s := range t.settings() {
		if _, err := c.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET pgautofailover.%s = %s", s[0], s[1])); err != nil {
			return fmt.Errorf("chaos: monitor setting %s: %w", s[0], err)
		}
	}
	_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

func (f *Formation) path(name string) string { return filepath.Join(f.Dir, name) }

func (f *Formation) env() []string {
	return []string{
		"PATH=" + filepath.Dir(f.pgctl) + ":/usr/bin:/bin",
		"HOME=" + f.Dir,
		"XDG_CONFIG_HOME=" + f.path("config"),
		"XDG_DATA_HOME=" + f.path("data"),
		"XDG_RUNTIME_DIR=" + f.path("run"),
		"PG_CONFIG=" + filepath.Join(filepath.Dir(f.pgctl), "pg_config"),
		"LANG=C.UTF-8",
	}
}

// autoctlRun runs one pg_autoctl command to its end.
func (f *Formation) autoctlRun(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, f.autoctl, args...)
	cmd.Env, cmd.Dir = f.env(), f.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: f.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("chaos: pg_autoctl %s: %v\n%s", strings.Join(args[:2], " "), err, tail)
	}
	return nil
}

// start starts a long-running pg_autoctl (run) in a process group of its
// own, so that the group can be killed whole: pg_autoctl, its services and
// the postmaster (PostgreSQL's children leave the group, and exit when
// the postmaster dies). It gets SIGTERM if this process dies first.
func (f *Formation) start(name string, args ...string) (*autoctlProc, error) {
	lf, err := os.OpenFile(f.path(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if f.cred != nil {
		_ = lf.Chown(int(f.cred.Uid), int(f.cred.Gid))
	}
	cmd := exec.Command(f.autoctl, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = f.env(), f.Dir, lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: f.cred, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("chaos: pg_autoctl %s: %w", strings.Join(args, " "), err)
	}
	p := &autoctlProc{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL to p's process group and waits for pg_autoctl's
// exit, then for the postmaster of pgdata (if any) to be gone.
func (p *autoctlProc) kill(pgdata string) {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	if pgdata == "" {
		return
	}
	// The postmaster is in the group; wait (briefly) for it to be gone.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pid := postmasterPID(pgdata)
		if pid <= 0 || syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postmasterPID(pgdata string) int {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// nodeURL connects to node n alone.
func (f *Formation) nodeURL(n *FormationNode) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", url.PathEscape(f.superuser), n.Port, f.DBName)
}

// URL is the application's connection string: every node, and
// target_session_attrs=read-write, so that a client connects to whichever
// is the primary (libpq's and pgx's multi-host syntax).
func (f *Formation) URL() string {
	hosts := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", n.Port)
	}
	u := url.URL{Scheme: "postgres", User: url.User(f.superuser), Host: strings.Join(hosts, ","), Path: "/" + f.DBName,
		RawQuery: "sslmode=disable&target_session_attrs=read-write&connect_timeout=2"}
	return u.String()
}

// NodeState is a node as the monitor sees it.
type NodeState struct {
	Name, Reported, Assigned string
	Port                     int
}

const nodeStatesSQL = `SELECT nodename, nodeport, reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY nodeid`

// States returns the nodes' reported and assigned states.
func (f *Formation) States(ctx context.Context) ([]NodeState, error) {
	c, err := pgx.Connect(ctx, f.MonitorURL)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, nodeStatesSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeState, error) {
		var s NodeState
		err := r.Scan(&s.Name, &s.Port, &s.Reported, &s.Assigned)
		return s, err
	})
}

// waitStates waits until every node named in want reports (and is
// assigned) that state.
func (f *Formation) waitStates(ctx context.Context, want map[string]string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last []NodeState
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = f.States(ctx)
		ok := lastErr == nil
		for name, st := range want {
			found := false
			for _, s := range last {
				if s.Name == name && s.Reported == st && s.Assigned == st {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: formation not in states %v within %s: %v %v (logs in %s)", want, within, last, lastErr, f.Dir)
}

// Primary returns the node the monitor has as primary (reported primary,
// wait_primary or single), or nil.
func (f *Formation) Primary(ctx context.Context) (*FormationNode, error) {
	states, err := f.States(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if slices.Contains([]string{"primary", "wait_primary", "single"}, s.Reported) && s.Reported == s.Assigned {
			return f.node(s.Name), nil
		}
	}
	return nil, nil
}

func (f *Formation) node(name string) *FormationNode {
	for _, n := range f.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Kill kills node n as a machine dies: SIGKILL to pg_autoctl and its
// postmaster at once (nothing shuts down, nothing is flushed). Its
// PostgreSQL backends exit when they notice the postmaster gone.
func (f *Formation) Kill(n *FormationNode) {
	f.mu.Lock()
	p := n.proc
	n.proc = nil
	f.mu.Unlock()
	p.kill(n.PGData)
}

// Restart starts node n's pg_autoctl again after Kill: it rejoins the
// formation (as a standby of the new primary, after pg_rewind).
func (f *Formation) Restart(n *FormationNode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n.proc != nil {
		return nil
	}
	p, err := f.start(n.Name, "run", "--pgdata", n.PGData)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// Close kills every node and the monitor (SIGKILL to each pg_autoctl's
// process group, at once: the formation is thrown away, nothing in it
// needs a clean shutdown), stops a postmaster left without one, and
// removes the directory. It is safe on a formation half made.
func (f *Formation) Close() {
	f.mu.Lock()
	var procs []*autoctlProc
	var pgdatas []string
	for _, n := range f.Nodes {
		procs, pgdatas = append(procs, n.proc), append(pgdatas, n.PGData)
		n.proc = nil
	}
	procs, pgdatas = append(procs, f.monitor), append(pgdatas, f.path("monitor"))
	f.monitor = nil
	f.mu.Unlock()
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.kill(pgdatas[i])
			stopPostmaster(pgdatas[i])
		}()
	}
	wg.Wait()
	if f.Dir != "" {
		_ = os.RemoveAll(f.Dir)
	}
}

// stopPostmaster kills a postmaster of pgdata still running (one that
// create started and no run owns: a formation half made).
func stopPostmaster(pgdata string) {
	pid := postmasterPID(pgdata)
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitConnect waits until dsn accepts a connection.
func waitConnect(ctx context.Context, dsn string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		var c *pgx.Conn
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err = pgx.Connect(cctx, dsn)
		cancel()
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

// ReplicationSettings reads, on node n, what makes a commit wait for the
// standby: synchronous_commit and synchronous_standby_names.
func (f *Formation) ReplicationSettings(ctx context.Context, n *FormationNode) (syncCommit, standbyNames string, err error) {
	c, err := pgx.Connect(ctx, f.nodeURL(n))
	if err != nil {
		return "", "", err
	}
	defer c.Close(context.WithoutCancel(ctx))
	err = c.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names')`).Scan(&syncCommit, &standbyNames)
	return syncCommit, standbyNames, err
}
