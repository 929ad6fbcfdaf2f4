package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/telemetry"
)

var updateREADME = flag.Bool("update", false, "rewrite the README's configuration tables (TestREADMEConfig)")

func getenvOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestTelemetryConfig: the telemetry variables (once telemetry's own
// ConfigFromEnv) fill telemetry.Config, from telemetry.DefaultConfig.
func TestTelemetryConfig(t *testing.T) {
	t.Parallel()
	t.Run("Defaults", func(t *testing.T) {
		c, err := loadConfig(getenvOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.Telemetry != telemetry.DefaultConfig() {
			t.Errorf("got %+v, want the defaults %+v", c.Telemetry, telemetry.DefaultConfig())
		}
		cfg := c.Telemetry
		if cfg.Service != "shoplab" || cfg.Env != "local" || cfg.Version != "dev" || !cfg.TraceEnabled ||
			cfg.AgentHost != "localhost" || cfg.TraceAgentPort != "8126" || cfg.DogStatsdAddr != "localhost:8125" ||
			cfg.LogLevel != "info" || cfg.SlowQuery != 200*time.Millisecond || cfg.AppName != "shoplab" {
			t.Errorf("defaults: %+v", cfg)
		}
	})
	t.Run("Set", func(t *testing.T) {
		c, err := loadConfig(getenvOf(map[string]string{
			"DD_SERVICE": "shop", "DD_ENV": "prod", "DD_VERSION": "1.2.3", "DD_TRACE_ENABLED": "false",
			"DD_AGENT_HOST": "agent", "DD_TRACE_AGENT_PORT": "9126", "DD_DOGSTATSD_PORT": "9125",
			"LOG_LEVEL": "DEBUG", "SLOW_QUERY_THRESHOLD": "1s", "PGAPPNAME": "shopd",
			"DD_RUNTIME_METRICS_ENABLED": "0", "LOG_SAMPLE_FIRST": "0",
		}))
		if err != nil {
			t.Fatal(err)
		}
		want := telemetry.Config{
			Service: "shop", Env: "prod", Version: "1.2.3", TraceEnabled: false, RuntimeMetrics: false,
			AgentHost: "agent", TraceAgentPort: "9126", DogStatsdAddr: "agent:9125", LogLevel: "debug",
			LogSampleFirst: 0, LogSampleThereafter: 100, SlowQuery: time.Second, AppName: "shopd",
		}
		if c.Telemetry != want {
			t.Errorf("got %+v\nwant %+v", c.Telemetry, want)
		}
	})
	t.Run("DogStatsdURL", func(t *testing.T) {
		for in, want := range map[string]string{
			"unix:///var/run/datadog/dsd.socket": "unix:///var/run/datadog/dsd.socket",
			"udp://dd-agent:8125":                "dd-agent:8125",
		} {
			c, err := loadConfig(getenvOf(map[string]string{"DD_DOGSTATSD_URL": in, "DD_AGENT_HOST": "x"}))
			if err != nil || c.Telemetry.DogStatsdAddr != want {
				t.Errorf("%s: got %q, %v; want %q", in, c.Telemetry.DogStatsdAddr, err, want)
			}
		}
	})
	t.Run("SlowQueryMillis", func(t *testing.T) {
		c, err := loadConfig(getenvOf(map[string]string{"SLOW_QUERY_THRESHOLD": "50"}))
		if err != nil || c.Telemetry.SlowQuery != 50*time.Millisecond {
			t.Errorf("got %v, %v", c.Telemetry.SlowQuery, err)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		_, err := loadConfig(getenvOf(map[string]string{
			"DD_TRACE_ENABLED": "maybe", "DD_TRACE_AGENT_PORT": "http", "LOG_LEVEL": "loud",
			"SLOW_QUERY_THRESHOLD": "soon", "DD_DOGSTATSD_URL": "tcp://x:1",
		}))
		if err == nil {
			t.Fatal("want an error")
		}
		for _, name := range []string{"DD_TRACE_ENABLED", "DD_TRACE_AGENT_PORT", "LOG_LEVEL", "SLOW_QUERY_THRESHOLD", "DD_DOGSTATSD_URL"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error does not name %s: %v", name, err)
			}
		}
	})
}

// TestConfigErrorsJoined: one error names every bad variable, whether it
// does not parse, is out of range or contradicts another.
func TestConfigErrorsJoined(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"PORT": "70000", "DB_MAX_CONNS": "-1", "CHECKOUT_LOCK_TIMEOUT": "soon", "SHUTDOWN_TIMEOUT": "-1s",
		"IDEMPOTENCY_KEY_TTL": "0s", "MAX_IMPORT_BYTES": "lots", "RELAY_ENABLED": "maybe",
		"PRODUCTS_V1_DEPRECATED_AT": "2027-06-01", "PRODUCTS_V1_SUNSET": "2027-01-01",
		"REPORTS_MAX_DURATION": "0s", "RELAY_BACKOFF_BASE": "2h", "LOG_SAMPLE_FIRST": "-1",
	}
	_, err := loadConfig(getenvOf(env))
	if err == nil {
		t.Fatal("accepted")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if !strings.Contains(err.Error(), `PORT="70000" is not a port number`) ||
		!strings.Contains(err.Error(), `CHECKOUT_LOCK_TIMEOUT="soon" must be a duration`) ||
		!strings.Contains(err.Error(), `DB_MAX_CONNS="-1" must be a positive integer`) {
		t.Errorf("messages:\n%v", err)
	}
}

// TestConfigDefaultsOnce: an unset variable keeps the default of the
// package that owns it, and a set one (even to zero) overwrites it.
func TestConfigDefaultsOnce(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(getenvOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != defaultDatabaseURL || c.ReportsDatabaseURL != defaultDatabaseURL {
		t.Errorf("database URLs %q %q, want make run's %q", c.DatabaseURL, c.ReportsDatabaseURL, defaultDatabaseURL)
	}
	if c.Relay.Retention == 0 || c.Telemetry.LogSampleFirst == 0 || c.UsersSplitPause != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(getenvOf(map[string]string{"RELAY_RETENTION": "0", "LOG_SAMPLE_FIRST": "0", "USERS_SPLIT_PAUSE": "50ms", "HOST": " 127.0.0.1 "}))
	if err != nil || c.Relay.Retention != 0 || c.Telemetry.LogSampleFirst != 0 || c.UsersSplitPause != 50*time.Millisecond ||
		c.Addr != "127.0.0.1:3000" {
		t.Errorf("set to zero: %+v %v", c, err)
	}
}

// TestConfigVariables: every field of vars names a variable, once, with a
// description; the usage mentions `help config`.
func TestConfigVariables(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, vr := range variables() {
		if vr.Name == "" || vr.Desc == "" || vr.Section == "" {
			t.Errorf("%+v: a variable needs an env tag, a desc tag and a section", vr)
		}
		if seen[vr.Name] {
			t.Errorf("%s listed twice", vr.Name)
		}
		seen[vr.Name] = true
		if def, _ := vr.defaultText(); def == "" {
			t.Errorf("%s: empty default needs an unset tag saying what it means", vr.Name)
		}
	}
	for _, name := range []string{"DATABASE_URL", "PGAPPNAME", "DD_SERVICE", "DD_ENV", "DD_VERSION", "DD_TRACE_ENABLED",
		"DD_AGENT_HOST", "DD_DOGSTATSD_URL", "DD_DOGSTATSD_PORT", "LOG_LEVEL", "LOG_SAMPLE_FIRST", "SLOW_QUERY_THRESHOLD",
		"SMTP_ADDR", "MAIL_FROM", "RELAY_LEASE", "REPORTS_MAX_CONCURRENT", "CHECKOUT_LOCK_TIMEOUT", "MAX_IMPORT_ROWS"} {
		if !seen[name] {
			t.Errorf("%s is not listed", name)
		}
	}
	if !strings.Contains(usage, "help config") {
		t.Error("usage does not mention help config")
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"shopd", "help", "config"}, getenvOf(map[string]string{"PORT": "bad"}), &out, io.Discard); err != nil {
		t.Fatalf("help config with a bad environment: %v", err)
	}
	for name := range seen {
		if !strings.Contains(out.String(), name) {
			t.Errorf("help config omits %s", name)
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"shopd", "config", "RELAY_LEASE", "DATABASE_URL"}, getenvOf(map[string]string{"DATABASE_URL": "postgres://x/y"}), &out, io.Discard); err != nil ||
		out.String() != "2m\npostgres://x/y\n" {
		t.Errorf("config: %q %v", out.String(), err)
	}
}

// TestREADMEConfig: README.md's configuration tables are what `shopd help
// config -markdown` prints. Regenerate them with `make config-docs`.
func TestREADMEConfig(t *testing.T) {
	t.Parallel()
	const path = "../../../README.md"
	const begin, end = "<!-- config:begin (generated by make config-docs from service/cmd/shopd/config.go) -->\n", "<!-- config:end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q block", strings.TrimSpace(begin), end)
	}
	got, want := readme[i+len(begin):j], "\n"+configMarkdown()+"\n"
	if got == want {
		return
	}
	if *updateREADME {
		if err := os.WriteFile(path, []byte(readme[:i+len(begin)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's configuration tables differ from service/cmd/shopd/config.go: run `make config-docs` (or go test ./service/cmd/shopd -run TestREADMEConfig -update)\n--- README\n%s\n--- generated\n%s", got, want)
}

// TestProductionRefusals: production is recognised however APP_ENV spells
// it, and then serve's configuration is refused without an ADMIN_TOKEN of
// 32 characters or more, or with BUYER_AUTH=off; outside production both
// are allowed.
func TestProductionRefusals(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", minProductionAdminToken)
	for _, env := range []string{"production", "Production", "PROD", "prod", "  production  "} {
		if !isProduction(env) {
			t.Errorf("isProduction(%q) = false", env)
		}
	}
	for _, env := range []string{"", "development", "staging", "preprod", "production-like"} {
		if isProduction(env) {
			t.Errorf("isProduction(%q) = true", env)
		}
	}
	for _, c := range []struct {
		env  map[string]string
		want []string // substrings of the refusal; none: accepted
	}{
		{map[string]string{"APP_ENV": " Prod ", "ADMIN_TOKEN": long}, nil},
		{map[string]string{"APP_ENV": "Production"}, []string{"ADMIN_TOKEN is not set"}},
		{map[string]string{"APP_ENV": "prod", "ADMIN_TOKEN": long[1:]}, []string{"ADMIN_TOKEN is 31 characters"}},
		{map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": "short", "BUYER_AUTH": "off"}, []string{"ADMIN_TOKEN is 5", "BUYER_AUTH=off"}},
		{map[string]string{"APP_ENV": "development", "BUYER_AUTH": "off"}, nil},
		{map[string]string{"ADMIN_TOKEN": "short"}, nil},
	} {
		cfg, err := loadConfig(getenvOf(c.env))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		err = productionRefusals(cfg)
		if (err == nil) != (len(c.want) == 0) {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v, want it to say %q", c.env, err, w)
			}
		}
	}
	// BUYER_AUTH: on by default; on/off and the usual booleans.
	for in, want := range map[string]onOff{"": true, "on": true, "OFF": false, "false": false, "1": true} {
		cfg, err := loadConfig(getenvOf(map[string]string{"BUYER_AUTH": in}))
		if err != nil || cfg.BuyerAuth != want {
			t.Errorf("BUYER_AUTH=%q: %v %v", in, cfg.BuyerAuth, err)
		}
	}
	if _, err := loadConfig(getenvOf(map[string]string{"BUYER_AUTH": "maybe"})); err == nil || !strings.Contains(err.Error(), "BUYER_AUTH") {
		t.Errorf("BUYER_AUTH=maybe: %v", err)
	}
}

func TestRateLimitConfig(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false}, // development: the harnesses and make run are not limited
		{map[string]string{"APP_ENV": "production"}, true},
		{map[string]string{"APP_ENV": "production", "RATE_LIMIT": "off"}, false},
		{map[string]string{"RATE_LIMIT": "ON"}, true},
	} {
		c, err := loadConfig(getenvOf(tc.env))
		if err != nil || c.rateLimited() != tc.want {
			t.Errorf("%v: rate limited %v, want %v (%v)", tc.env, c.rateLimited(), tc.want, err)
		}
	}
	c, err := loadConfig(getenvOf(map[string]string{"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,::ffff:172.16.0.1, fd00::/8"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.TrustedProxies.prefixes()); got != "[10.0.0.0/8 192.168.1.7/32 172.16.0.1/32 fd00::/8]" {
		t.Errorf("TRUSTED_PROXIES: %s", got)
	}
	_, err = loadConfig(getenvOf(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,proxy.local", "RATE_LIMIT": "sometimes", "RATE_LIMIT_WINDOW": "0s"}))
	for _, want := range []string{`TRUSTED_PROXIES="10.0.0.0/8,proxy.local" has "proxy.local"`, `RATE_LIMIT="sometimes" must be on, off or auto`, "RATE_LIMIT_WINDOW must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %s", err, want)
		}
	}
}
