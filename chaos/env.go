package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// AdminToken is the ADMIN_TOKEN of the shopd a run starts.
const AdminToken = "chaos-admin"

// Env is the stack one run stands up, handed to a scenario's Setup, loads
// and fault. Its fields are set before Setup runs, except the shopd
// processes, which start after Setup.
type Env struct {
	// Scenario is the scenario being run, Phases its phase durations at
	// this run's scale, and Factor the compression (1: full scale).
	Scenario *Scenario
	Phases   Phases
	Factor   float64
	// DB is the run's fresh database; DatabaseURL connects to it directly
	// (not through the proxy): the fault's own sessions use it.
	DB *benchkit.Database
	// Fixture is what moncheck.Seed picked: heavy user, customers,
	// in-stock products.
	Fixture *moncheck.Fixture
	// Sink receives shopd's mail; Stop and Start it for an outage.
	Sink *moncheck.SMTPSink
	// Recorder captures shopd's DogStatsD stream.
	Recorder *ddquery.Recorder
	// Proxy sits between shopd and PostgreSQL when the scenario is
	// ThroughProxy (nil otherwise): add toxics with AddToxic, cut the
	// database off with CutDatabase.
	Proxy *toxiproxy.Proxy
	// Formation is the pg_auto_failover formation the database runs on
	// when the scenario asks for one (Scenario.Formation), else nil.
	Formation *Formation

	lb     *balancer
	start  time.Time // when the load started
	bin    string
	logDir string
	mu     sync.Mutex
	shopds []*benchkit.Shopd
	closes []func()
	// Notes are lines a fault or setup wants in the report.
	notes []string
}

// URL is the base URL of the first shopd, or of the load balancer in
// front of them when the scenario is Balanced.
func (e *Env) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lb != nil {
		return e.lb.url
	}
	if len(e.shopds) == 0 {
		return ""
	}
	return e.shopds[0].URL
}

// Shopds returns the shopd processes started so far, first one first.
func (e *Env) Shopds() []*benchkit.Shopd {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*benchkit.Shopd(nil), e.shopds...)
}

// Note adds a line to the run's report (what a fault did, when).
func (e *Env) Note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// shopdDatabaseURL is the URL shopd connects with: through the proxy when
// there is one.
func (e *Env) shopdDatabaseURL() (string, error) {
	if e.Proxy == nil {
		return e.DB.URL, nil
	}
	u, err := url.Parse(e.DB.URL)
	if err != nil {
		return "", err
	}
	u.Host = e.Proxy.Listen
	return u.String(), nil
}

// StartShopd starts one more `shopd serve` on the run's database (through
// the proxy if any), its metrics to the recorder, its mail to the sink,
// with the scenario's environment and switches, then extra. The run stops
// it at the end; a fault may Stop it earlier (a crash, a restart).
func (e *Env) StartShopd(ctx context.Context, extra ...string) (*benchkit.Shopd, error) {
	dsn, err := e.shopdDatabaseURL()
	if err != nil {
		return nil, err
	}
	env := moncheck.ShopdEnv(e.Recorder.Addr(), e.Sink.Addr(), "chaos", AdminToken)
	stats := scaleDur(10*time.Second, e.Factor, 250*time.Millisecond).String()
	env = append(env, "DB_STATS_INTERVAL="+stats, "RELAY_STATS_INTERVAL="+stats)
	env = append(env, e.Scenario.Shopd...)
	if len(e.Scenario.Switches) > 0 {
		env = append(env, "SWITCHES="+strings.Join(e.Scenario.Switches, ","))
	}
	env = append(env, extra...)
	e.mu.Lock()
	n := len(e.shopds)
	e.mu.Unlock()
	s, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{
		Bin: e.bin, DatabaseURL: dsn, Env: env,
		LogPath: filepath.Join(e.logDir, fmt.Sprintf("shopd-%d.log", n)),
	})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.shopds = append(e.shopds, s)
	e.mu.Unlock()
	if e.lb != nil {
		if err := e.lb.add(s.URL); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Drain takes shopd s out of the load balancer's service (a Balanced
// scenario): no new request goes to it. It returns how many requests s was
// serving then.
func (e *Env) Drain(s *benchkit.Shopd) int64 {
	if e.lb == nil {
		return 0
	}
	return e.lb.drain(s.URL)
}

// InFlight is how many requests the load balancer has sent to s and not
// yet seen answered (0 without a balancer).
func (e *Env) InFlight(s *benchkit.Shopd) int64 {
	if e.lb == nil {
		return 0
	}
	return e.lb.inFlight(s.URL)
}

// Session opens another PostgreSQL session on the run's database (not
// through the proxy), application_name chaos.fault: the other client of an
// incident. The caller closes it.
func (e *Env) Session(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.DB.URL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "chaos.fault"
	return pgx.ConnectConfig(ctx, cfg)
}

// AddToxic adds a toxic to the proxy, as toxiproxy's API takes it: e.g.
// `{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":200}}`.
func (e *Env) AddToxic(toxicJSON string) error {
	if e.Proxy == nil {
		return errors.New("chaos: no proxy (the scenario is not ThroughProxy)")
	}
	_, err := e.Proxy.Toxics.AddToxicJson(strings.NewReader(toxicJSON))
	return err
}

// RemoveToxic removes the toxic named name from the proxy.
func (e *Env) RemoveToxic(ctx context.Context, name string) error {
	if e.Proxy == nil {
		return errors.New("chaos: no proxy (the scenario is not ThroughProxy)")
	}
	return e.Proxy.Toxics.RemoveToxic(ctx, name)
}

// CutDatabase stops the proxy: its connections are closed and new ones are
// refused, as when PostgreSQL goes away. RestoreDatabase brings it back on
// the same address.
func (e *Env) CutDatabase() error {
	if e.Proxy == nil {
		return errors.New("chaos: no proxy (the scenario is not ThroughProxy)")
	}
	e.Proxy.Stop()
	return nil
}

// RestoreDatabase restarts the proxy after CutDatabase.
func (e *Env) RestoreDatabase() error {
	if e.Proxy == nil {
		return errors.New("chaos: no proxy (the scenario is not ThroughProxy)")
	}
	err := e.Proxy.Start()
	if errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return nil
	}
	return err
}

// startProxy starts a toxiproxy in this process, listening on a free port
// of 127.0.0.1, to the PostgreSQL server of dsn.
func startProxy(dsn string) (*toxiproxy.Proxy, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, "postgres", "127.0.0.1:0", host)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("chaos: toxiproxy to %s: %w", host, err)
	}
	return p, nil
}

// close stops every shopd, the proxy, the sink and the recorder, and drops
// the database.
func (e *Env) close() {
	for _, s := range e.Shopds() {
		s.Stop()
	}
	for i := len(e.closes) - 1; i >= 0; i-- {
		e.closes[i]()
	}
}

func newLogDir(name string) string {
	dir, err := os.MkdirTemp("", "chaos-"+name+"-")
	if err != nil {
		return os.TempDir()
	}
	return dir
}
