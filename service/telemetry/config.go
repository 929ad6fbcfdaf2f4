package telemetry

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
)

// Config is the telemetry configuration, read from the standard Datadog
// environment plus a few shoplab variables by ConfigFromEnv. Trace sampling is
// not here: dd-trace-go reads DD_TRACE_SAMPLING_RULES and DD_TRACE_SAMPLE_RATE
// itself.
type Config struct {
	// Service is the service name on spans, metrics and logs (DD_SERVICE,
	// default "shoplab"). Postgres spans use Service + "-postgres".
	Service string
	// Env is the deployment environment (DD_ENV, default "local").
	Env string
	// Version is the service version (DD_VERSION, default "dev").
	Version string
	// TraceEnabled starts the dd-trace-go tracer in New (DD_TRACE_ENABLED,
	// default true).
	TraceEnabled bool
	// RuntimeMetrics makes the tracer report Go runtime metrics
	// (DD_RUNTIME_METRICS_ENABLED, default true). Only used when TraceEnabled.
	RuntimeMetrics bool
	// AgentHost is the Datadog agent host (DD_AGENT_HOST, default "localhost").
	AgentHost string
	// TraceAgentPort is the trace agent port (DD_TRACE_AGENT_PORT, default
	// "8126").
	TraceAgentPort string
	// DogStatsdAddr is the DogStatsD address: DD_DOGSTATSD_URL
	// ("unix:///path/dsd.socket" or "udp://host:port") if set, else
	// AgentHost:DD_DOGSTATSD_PORT (default port 8125). It is in the form the
	// datadog-go client takes: "host:port" or "unix:///path".
	DogStatsdAddr string
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn,
	// error; default info).
	LogLevel string
	// LogSampleFirst configures log sampling: each second, the first
	// LogSampleFirst lines with the same level and message are written, then
	// only every LogSampleThereafter-th (LOG_SAMPLE_FIRST, default 100; 0
	// disables sampling).
	LogSampleFirst int
	// LogSampleThereafter: see LogSampleFirst (LOG_SAMPLE_THEREAFTER, default
	// 100; 0 drops every line past the first LogSampleFirst each second).
	LogSampleThereafter int
	// SlowQuery is the duration above which a statement is logged as a slow
	// query (SLOW_QUERY_THRESHOLD, a Go duration such as "200ms" or a number of
	// milliseconds; default 200ms; 0 disables the log line).
	SlowQuery time.Duration
	// AppName is the postgres application_name the service sets on its
	// connections; the lock wait sampler watches the sessions that carry it
	// (PGAPPNAME, default "shoplab").
	AppName string
}

// DefaultConfig returns the configuration ConfigFromEnv returns for an empty
// environment.
func DefaultConfig() Config {
	return Config{
		Service:             "shoplab",
		Env:                 "local",
		Version:             "dev",
		TraceEnabled:        true,
		RuntimeMetrics:      true,
		AgentHost:           "localhost",
		TraceAgentPort:      "8126",
		DogStatsdAddr:       "localhost:8125",
		LogLevel:            "info",
		LogSampleFirst:      100,
		LogSampleThereafter: 100,
		SlowQuery:           200 * time.Millisecond,
		AppName:             "shoplab",
	}
}

// ConfigFromEnv reads the configuration from getenv (os.Getenv in production).
// Unset or empty variables take their defaults (see Config). It returns an
// error naming every variable whose value does not parse.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	var errs []error
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	boolean := func(name string, dst *bool) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean", name, v))
			return
		}
		*dst = b
	}
	integer := func(name string, dst *int) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: not a non-negative integer", name, v))
			return
		}
		*dst = n
	}

	str("DD_SERVICE", &cfg.Service)
	str("DD_ENV", &cfg.Env)
	str("DD_VERSION", &cfg.Version)
	boolean("DD_TRACE_ENABLED", &cfg.TraceEnabled)
	boolean("DD_RUNTIME_METRICS_ENABLED", &cfg.RuntimeMetrics)
	str("DD_AGENT_HOST", &cfg.AgentHost)
	str("DD_TRACE_AGENT_PORT", &cfg.TraceAgentPort)
	if err := checkPort(cfg.TraceAgentPort); err != nil {
		errs = append(errs, fmt.Errorf("DD_TRACE_AGENT_PORT=%q: %w", cfg.TraceAgentPort, err))
	}

	if u := strings.TrimSpace(getenv("DD_DOGSTATSD_URL")); u != "" {
		addr, err := parseDogStatsdURL(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("DD_DOGSTATSD_URL=%q: %w", u, err))
		}
		cfg.DogStatsdAddr = addr
	} else {
		port := "8125"
		str("DD_DOGSTATSD_PORT", &port)
		if err := checkPort(port); err != nil {
			errs = append(errs, fmt.Errorf("DD_DOGSTATSD_PORT=%q: %w", port, err))
		}
		cfg.DogStatsdAddr = net.JoinHostPort(cfg.AgentHost, port)
	}

	str("LOG_LEVEL", &cfg.LogLevel)
	cfg.LogLevel = strings.ToLower(cfg.LogLevel)
	if _, err := zapcore.ParseLevel(cfg.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: %w", cfg.LogLevel, err))
	}
	integer("LOG_SAMPLE_FIRST", &cfg.LogSampleFirst)
	integer("LOG_SAMPLE_THEREAFTER", &cfg.LogSampleThereafter)

	if v := strings.TrimSpace(getenv("SLOW_QUERY_THRESHOLD")); v != "" {
		d, err := parseMillisOrDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SLOW_QUERY_THRESHOLD=%q: %w", v, err))
		}
		cfg.SlowQuery = d
	}
	str("PGAPPNAME", &cfg.AppName)

	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("telemetry config: %w", err)
	}
	return cfg, nil
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return errors.New("not a port number")
	}
	return nil
}

// parseDogStatsdURL turns DD_DOGSTATSD_URL into the address datadog-go takes.
func parseDogStatsdURL(u string) (string, error) {
	switch {
	case strings.HasPrefix(u, "unix://"):
		if len(u) == len("unix://") {
			return "", errors.New("empty socket path")
		}
		return u, nil
	case strings.HasPrefix(u, "udp://"):
		hp := strings.TrimSuffix(strings.TrimPrefix(u, "udp://"), "/")
		if _, port, err := net.SplitHostPort(hp); err != nil || checkPort(port) != nil {
			return "", errors.New("want udp://host:port")
		}
		return hp, nil
	default:
		return "", errors.New("want unix:///path or udp://host:port")
	}
}

func parseMillisOrDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, errors.New("negative")
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 200ms or a number of milliseconds")
	}
	return d, nil
}
