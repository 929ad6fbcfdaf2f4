package benchkit

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The test binary doubles as a fake shopd: with BENCHKIT_FAKE_SHOPD set,
// `<test binary> serve` behaves as StartShopd expects of shopd (or, per the
// variable's value, misbehaves), so that StartShopd and Stop are tested
// without building the real one.
func TestMain(m *testing.M) {
	if mode := os.Getenv("BENCHKIT_FAKE_SHOPD"); mode != "" && len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(fakeShopd(mode))
	}
	os.Exit(m.Run())
}

var spikeSink []byte

// fakeShopd listens on HOST:PORT, logs {"msg":"listening","addr":...} on
// stdout, answers /health (503 for its first 3 requests) and /env/<KEY>
// (its environment) and /spike (64 MB resident for a moment), and exits 0 on SIGTERM. Mode "exit" exits 3 at once.
func fakeShopd(mode string) int {
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "fake shopd: refusing to start")
		return 3
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var healthCalls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if healthCalls.Add(1) <= 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/spike", func(http.ResponseWriter, *http.Request) {
		b := make([]byte, 64<<20)
		for i := range b {
			b[i] = 1
		}
		spikeSink = b
		spikeSink = nil
		debug.FreeOSMemory()
	})
	mux.HandleFunc("/env/{key}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, os.Getenv(r.PathValue("key")))
	})
	srv := &http.Server{Handler: mux}
	fmt.Println(`{"level":"info","msg":"starting"}`)
	b, _ := json.Marshal(map[string]string{"level": "info", "msg": "listening", "addr": ln.Addr().String()})
	fmt.Println(string(b))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() { _ = srv.Serve(ln) }()
	<-stop
	fmt.Println(`{"level":"info","msg":"stopped"}`)
	return 0
}

func TestStartShopd(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		t.Setenv("BENCHKIT_FAKE_SHOPD", "serve")
		logPath := filepath.Join(t.TempDir(), "shopd.log")
		s, err := StartShopd(t.Context(), ShopdConfig{
			Bin: os.Args[0], DatabaseURL: "postgres://bench@127.0.0.1/db",
			Env: []string{"PGAPPNAME=bench_app", "DD_DOGSTATSD_PORT=7"}, LogPath: logPath,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || strings.HasSuffix(s.URL, ":0") {
			t.Errorf("URL %q, want http://127.0.0.1:<free port>", s.URL)
		}
		// The fake's /health answers 503 three times: StartShopd returned
		// only after a 200, so the next one is a 200 too.
		get := func(path string) (int, string) {
			res, err := http.Get(s.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		if code, _ := get("/health"); code != 200 {
			t.Errorf("/health after start: %d, want 200", code)
		}
		for key, want := range map[string]string{
			"DATABASE_URL": "postgres://bench@127.0.0.1/db", "PORT": "0", "HOST": "127.0.0.1",
			"DD_TRACE_ENABLED": "false", "PGAPPNAME": "bench_app",
			"DD_DOGSTATSD_PORT": "7", // the caller's Env wins over the defaults
		} {
			if _, got := get("/env/" + key); got != want {
				t.Errorf("shopd's %s = %q, want %q", key, got, want)
			}
		}
		m, err := s.Memory()
		if err != nil {
			t.Fatal(err)
		}
		if m.RSS <= 0 || m.Peak < m.RSS {
			t.Errorf("memory %+v: want 0 < RSS <= Peak", m)
		}
		// A 64 MB spike, gone again: Peak keeps it until ResetPeak.
		if code, _ := get("/spike"); code != 200 {
			t.Fatalf("/spike: %d", code)
		}
		spiked, err := s.Memory()
		if err != nil {
			t.Fatal(err)
		}
		if spiked.Peak-spiked.RSS < 48<<20 {
			t.Errorf("after the spike %+v: want Peak 64 MB over RSS", spiked)
		}
		if err := s.ResetPeak(); err != nil {
			t.Fatal(err)
		}
		reset, err := s.Memory()
		if err != nil {
			t.Fatal(err)
		}
		if reset.Peak-reset.RSS > 16<<20 || reset.Peak > spiked.Peak-(48<<20) {
			t.Errorf("after ResetPeak %+v (before %+v): want Peak back near RSS", reset, spiked)
		}
		s.Stop()
		s.Stop() // harmless
		if s.waitErr != nil {
			t.Errorf("shopd exit after SIGTERM: %v, want a graceful exit", s.waitErr)
		}
		log, _ := os.ReadFile(logPath)
		if !strings.Contains(string(log), `"msg":"listening"`) || !strings.Contains(string(log), `"msg":"stopped"`) {
			t.Errorf("log file has not shopd's whole output:\n%s", log)
		}
	})
	t.Run("ErrExitedBeforeListening", func(t *testing.T) {
		t.Setenv("BENCHKIT_FAKE_SHOPD", "exit")
		logPath := filepath.Join(t.TempDir(), "shopd.log")
		start := time.Now()
		_, err := StartShopd(t.Context(), ShopdConfig{Bin: os.Args[0], LogPath: logPath})
		if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), logPath) {
			t.Fatalf("error %v, want shopd exited before listening; see the log", err)
		}
		if d := time.Since(start); d > StartTimeout/2 {
			t.Errorf("took %s to notice the exit", d)
		}
		log, _ := os.ReadFile(logPath)
		if !strings.Contains(string(log), "refusing to start") {
			t.Errorf("stderr not in the log file: %q", log)
		}
	})
	t.Run("ErrNoBinary", func(t *testing.T) {
		_, err := StartShopd(t.Context(), ShopdConfig{Bin: filepath.Join(t.TempDir(), "shopd")})
		if err == nil || !strings.Contains(err.Error(), "make build") {
			t.Fatalf("error %v, want a hint to run make build", err)
		}
	})
}

func TestReadMemory(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		m, err := readMemory(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if m.RSS <= 0 || m.Peak < m.RSS {
			t.Errorf("memory %+v: want 0 < RSS <= Peak", m)
		}
	})
	t.Run("ErrNoProcess", func(t *testing.T) {
		if _, err := readMemory(-1); err == nil {
			t.Error("no error for pid -1")
		}
	})
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable":     "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=secret&sslmode=require": "postgres://u@h/db?password=xxxxx&sslmode=require",
		"postgres://postgres@127.0.0.1:5432/postgres":       "postgres://postgres@127.0.0.1:5432/postgres",
		"host=h user=u password=secret":                     "(database url)",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		db, err := CreateDatabase(ctx, DefaultServer(), "kit_test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Drop)
		if !strings.HasPrefix(db.Name, "shoplab_bench_kit_test_") || !strings.Contains(db.URL, "/"+db.Name) {
			t.Errorf("name %q, URL %q", db.Name, Redact(db.URL))
		}
		c, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			t.Fatal(err)
		}
		var products, customers bool
		err = c.QueryRow(ctx, `SELECT to_regclass('products') IS NOT NULL, to_regclass('customers') IS NOT NULL`).Scan(&products, &customers)
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !products || !customers {
			t.Errorf("not migrated: products %v, customers %v", products, customers)
		}
		db.Drop()
		db.Drop() // harmless
		if exists(t, db.Name) {
			t.Errorf("database %s still exists after Drop", db.Name)
		}
	})
	t.Run("ErrBadLabel", func(t *testing.T) {
		t.Parallel()
		if _, err := CreateDatabase(ctx, DefaultServer(), "x; DROP"); err == nil {
			t.Error("no error for a label that is not an identifier")
		}
	})
	t.Run("ErrServerRedacted", func(t *testing.T) {
		t.Parallel()
		_, err := CreateDatabase(ctx, "postgres://u:secret@127.0.0.1:1/postgres?connect_timeout=2", "kit_test")
		if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("error %v: want a connect error naming the server without its password", err)
		}
	})
}

func TestCloneDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tmpl, err := CreateDatabase(ctx, DefaultServer(), "kit_tmpl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tmpl.Drop)
	c, err := pgx.Connect(ctx, tmpl.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, `INSERT INTO products (name, description, price, inventory) VALUES ('cloned', 'from the template', 1, 7)`)
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := CloneDatabase(ctx, DefaultServer(), "kit_clone", tmpl.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Drop)
	if !strings.HasPrefix(db.Name, "shoplab_bench_kit_clone_") {
		t.Errorf("name %q", db.Name)
	}
	c, err = pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	var inventory int
	err = c.QueryRow(ctx, `SELECT inventory FROM products WHERE name = 'cloned'`).Scan(&inventory)
	c.Close(ctx)
	if err != nil || inventory != 7 {
		t.Errorf("the clone's product: inventory %d, %v; want the template's 7", inventory, err)
	}
	if _, err := CloneDatabase(ctx, DefaultServer(), "kit_clone", ""); err == nil {
		t.Error("no error for a clone without a template")
	}
	if _, err := CloneDatabase(ctx, DefaultServer(), "kit_clone", "shoplab_bench_no_such_template"); err == nil {
		t.Error("no error for a template that does not exist")
	}
}

func exists(t *testing.T, name string) bool {
	t.Helper()
	ctx := t.Context()
	c, err := pgx.Connect(ctx, DefaultServer())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "r.json")
	if err := WriteJSON(path, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "{\n  \"a\": 1\n}\n" {
		t.Errorf("wrote %q", b)
	}
}

func TestProcStat(t *testing.T) {
	t.Parallel()
	if got, want := ProcParent(os.Getpid()), os.Getppid(); got != want {
		t.Errorf("ProcParent(self) = %d, want %d", got, want)
	}
	// This process's CPU time shows once it has spent a few ticks.
	deadline := time.Now().Add(30 * time.Second)
	for ProcCPU(os.Getpid()) <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("ProcCPU(self) still 0 after 30s of spinning")
		}
		for i := 0; i < 1_000_000; i++ {
			_ = strings.Repeat("x", i%8)
		}
	}
	for _, pid := range []int{0, -1} {
		if ProcCPU(pid) != 0 || ProcParent(pid) != 0 {
			t.Errorf("pid %d: ProcCPU %v, ProcParent %d; want 0, 0", pid, ProcCPU(pid), ProcParent(pid))
		}
	}
}
