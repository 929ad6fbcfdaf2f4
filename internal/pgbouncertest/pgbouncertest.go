// Package pgbouncertest runs a real PgBouncer process (Debian's pgbouncer
// package, installed by `make deps`) in front of a PostgreSQL server, for
// tests, benches and chaos scenarios that must go through connection pooling
// as production would.
//
// A Bouncer listens on a free port of 127.0.0.1 (no unix socket), in
// transaction pooling mode unless told otherwise, with auth_type trust and
// one fallback database entry ("*") that sends every database name to the
// same name on the server: any database a test creates can be reached
// through it without reconfiguring. Its config, userlist and log live in a
// directory of its own, removed by Stop (or, for a bouncer never stopped,
// by a later Start once its process has ended).
//
// PgBouncer refuses to run as root; when this process is root (CI), the
// bouncer runs as the postgres user (Credential), its directory owned by
// that user. The process gets SIGTERM when the thread that started it dies
// (Pdeathsig, on a thread locked for the bouncer's lifetime), so a test
// binary that exits or crashes leaves no pgbouncer behind.
package pgbouncertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoplab/shoplab/internal/pgproc"
)

// ExecMode is the pgx query exec mode that works through PgBouncer 1.18 in
// transaction pooling mode (docs/pgbouncer.md): parameters and results in
// text, one unnamed statement per query, nothing prepared across
// transactions. URL adds it to the URLs it rewrites.
const ExecMode = "exec"

// StartTimeout bounds Start: from exec until the port accepts connections.
const StartTimeout = 15 * time.Second

// Options configure a Bouncer. The zero value is transaction pooling with
// PgBouncer's own defaults for the pool sizes.
type Options struct {
	// PoolMode is pool_mode: "transaction" (the default), "session" or
	// "statement".
	PoolMode string
	// DefaultPoolSize is default_pool_size, the server connections per
	// database and user (0: 20).
	DefaultPoolSize int
	// MaxClientConn is max_client_conn (0: 500).
	MaxClientConn int
	// Settings are more [pgbouncer] settings (name -> value), written
	// after the ones above, so they win: query_wait_timeout,
	// server_reset_query...
	Settings map[string]string
}

// Bouncer is a running pgbouncer process.
type Bouncer struct {
	// Port is the port it listens on, on 127.0.0.1.
	Port int

	dir    string
	server *url.URL // the PostgreSQL server the fallback entry points at
	opt    Options
	uid    int // owner of dir and of the process; -1: this process's

	mu      sync.Mutex
	proc    *os.Process
	exited  chan struct{} // closed once the process has been waited for
	waitErr error
	stderr  bytes.Buffer
}

// Path returns the pgbouncer binary: from $PATH, else Debian's
// /usr/sbin/pgbouncer. Its error names `make deps`, which installs it.
func Path() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/pgbouncer"
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", errors.New("pgbouncer is not installed (not in $PATH nor /usr/sbin/pgbouncer): run `make deps` (scripts/install-deps.sh installs Debian's pgbouncer package)")
}

// New starts a bouncer in front of the server of serverURL (any database
// of it; only host, port, user and password are used) and stops it when
// the test ends. It fails the test when pgbouncer is missing or does not
// start.
func New(t testing.TB, serverURL string, opt Options) *Bouncer {
	t.Helper()
	b, err := Start(t.Context(), serverURL, opt)
	if err != nil {
		t.Fatalf("pgbouncertest: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("pgbouncertest: %v", err)
		}
	})
	return b
}

// Start starts a bouncer in front of the server of serverURL and returns
// once it accepts connections. The caller must Stop it.
func Start(ctx context.Context, serverURL string, opt Options) (*Bouncer, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("server URL: want postgres://user@host:port/db")
	}
	b := &Bouncer{server: u, opt: opt, uid: -1}
	cred, err := pgproc.PostgresCredential()
	if err != nil {
		return nil, fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user to run it as: %w", err)
	}
	if cred != nil {
		b.uid = int(cred.Uid)
		cred.NoSetGroups = true
	}
	collectStaleDirs()
	if b.dir, err = os.MkdirTemp("", fmt.Sprintf("%sp%d-", dirPrefix, os.Getpid())); err != nil {
		return nil, err
	}
	if err := pgproc.Chown(cred, b.dir); err != nil {
		_ = os.RemoveAll(b.dir)
		return nil, err
	}
	// A port picked free may be taken before pgbouncer binds it: try again.
	for attempt := 0; ; attempt++ {
		if b.Port, err = pgproc.FreePort(); err == nil {
			if err = b.writeConfig(); err == nil {
				err = b.start(ctx, bin, cred)
			}
		}
		if err == nil {
			return b, nil
		}
		if attempt == 2 || ctx.Err() != nil {
			_ = os.RemoveAll(b.dir)
			return nil, err
		}
	}
}

// dirPrefix starts the name of every bouncer's directory in os.TempDir(),
// followed by p<pid of the process that started it>-.
const dirPrefix = "pgbouncertest-"

// collectStaleDirs removes the directories of bouncers whose starting
// process has ended: a bouncer that lives as long as its test binary (one
// shared by all its tests, as pgtest's) is never Stopped, so its
// directory is collected by the next Start on the machine instead.
func collectStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"p*-*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), dirPrefix+"p")
		pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '-'), 0)])
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// start runs pgbouncer on a goroutine whose OS thread stays locked until
// the process exits, so that Pdeathsig ends it with this process and not
// earlier, and waits until its port accepts connections.
func (b *Bouncer) start(ctx context.Context, bin string, cred *syscall.Credential) error {
	b.stderr.Reset()
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd := exec.Command(bin, b.configPath())
		cmd.Dir = b.dir
		cmd.Stdout = &syncWriter{mu: &b.mu, w: &b.stderr}
		cmd.Stderr = cmd.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Credential: cred}
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		b.mu.Lock()
		b.proc = cmd.Process
		b.exited = exited
		b.mu.Unlock()
		started <- nil
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start pgbouncer: %w", err)
	}
	deadline := time.Now().Add(StartTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgbouncer exited at start (%v): %s", b.waitErr, b.Log())
		case <-ctx.Done():
			_ = b.Stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = b.Stop()
			return fmt.Errorf("pgbouncer did not listen on %s within %s: %s", addr, StartTimeout, b.Log())
		}
	}
}

func (b *Bouncer) configPath() string { return filepath.Join(b.dir, "pgbouncer.ini") }

// writeConfig writes pgbouncer.ini and userlist.txt for b.server and b.opt.
func (b *Bouncer) writeConfig() error {
	host, port := b.server.Hostname(), b.server.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	user := b.server.User.Username()
	if user == "" {
		user = "postgres"
	}
	target := fmt.Sprintf("host=%s port=%s", host, port)
	if pw, ok := b.server.User.Password(); ok {
		target += " password=" + quoteValue(pw)
	}
	settings := map[string]string{
		"listen_addr":     "127.0.0.1",
		"listen_port":     strconv.Itoa(b.Port),
		"unix_socket_dir": "",
		"auth_type":       "trust",
		"auth_file":       filepath.Join(b.dir, "userlist.txt"),
		"admin_users":     user,
		"stats_users":     user,
		"logfile":         filepath.Join(b.dir, "pgbouncer.log"),
		"pool_mode":       "transaction",
		"max_client_conn": "500",
		// pgx sends no such parameter; libpq-based tools and JDBC do
		// (docs/pgbouncer.md).
		"ignore_startup_parameters": "extra_float_digits",
	}
	if b.opt.PoolMode != "" {
		settings["pool_mode"] = b.opt.PoolMode
	}
	if b.opt.DefaultPoolSize > 0 {
		settings["default_pool_size"] = strconv.Itoa(b.opt.DefaultPoolSize)
	}
	if b.opt.MaxClientConn > 0 {
		settings["max_client_conn"] = strconv.Itoa(b.opt.MaxClientConn)
	}
	for k, v := range b.opt.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ini strings.Builder
	fmt.Fprintf(&ini, "[databases]\n* = %s\n\n[pgbouncer]\n", target)
	for _, k := range keys {
		fmt.Fprintf(&ini, "%s = %s\n", k, settings[k])
	}
	if err := b.writeFile("pgbouncer.ini", ini.String()); err != nil {
		return err
	}
	pw, _ := b.server.User.Password()
	return b.writeFile("userlist.txt", fmt.Sprintf("%q %q\n", user, pw))
}

func (b *Bouncer) writeFile(name, content string) error {
	p := filepath.Join(b.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return err
	}
	if b.uid >= 0 {
		return os.Chown(p, b.uid, -1)
	}
	return nil
}

// quoteValue quotes a libpq connection-string value.
func quoteValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// URL returns dsn (a URL of a database on the bouncer's server) rewritten
// to go through the bouncer: same user, password and database, the
// bouncer's host and port, and default_query_exec_mode=exec unless dsn
// names a mode already.
func (b *Bouncer) URL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	q := u.Query()
	if q.Get("default_query_exec_mode") == "" {
		q.Set("default_query_exec_mode", ExecMode)
	}
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Retarget points the fallback entry at another server (a failover's new
// primary) and reloads the bouncer (SIGHUP): new server connections go to
// the new host; existing ones are closed as they are released.
func (b *Bouncer) Retarget(serverURL string) error {
	u, err := url.Parse(serverURL)
	if err != nil {
		return err
	}
	b.server = u
	if err := b.writeConfig(); err != nil {
		return err
	}
	return b.signal(syscall.SIGHUP)
}

func (b *Bouncer) signal(sig os.Signal) error {
	b.mu.Lock()
	p := b.proc
	b.mu.Unlock()
	if p == nil {
		return errors.New("pgbouncer is not running")
	}
	return p.Signal(sig)
}

// Log returns what pgbouncer wrote so far: its log file and its stderr.
func (b *Bouncer) Log() string {
	b.mu.Lock()
	out := b.stderr.String()
	b.mu.Unlock()
	if f, err := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log")); err == nil {
		out = string(f) + out
	}
	return strings.TrimSpace(out)
}

// Stop ends the bouncer (SIGTERM: immediate shutdown, its clients are
// disconnected; SIGKILL after 5s) and removes its directory, log included
// (read Log first). Calling it again is harmless.
func (b *Bouncer) Stop() error {
	b.mu.Lock()
	p, exited := b.proc, b.exited
	b.mu.Unlock()
	var err error
	if p != nil {
		select {
		case <-exited:
		default:
			_ = p.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = p.Kill()
				<-exited
				err = errors.New("pgbouncer did not stop within 5s of SIGTERM; killed")
			}
		}
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
	return err
}

// syncWriter serializes writes to w under mu.
type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
