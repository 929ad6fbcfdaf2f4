package telemetry

import (
	"net"
	"time"
)

// Config is the telemetry configuration. shopd fills it from the standard
// Datadog environment plus a few shoplab variables (the environment variable
// of each field is named below; shopd's config.go reads them all), starting
// from DefaultConfig. Trace sampling is not here: dd-trace-go reads
// DD_TRACE_SAMPLING_RULES and DD_TRACE_SAMPLE_RATE itself.
type Config struct {
	// Service is the service name on spans, metrics and logs (DD_SERVICE).
	// Postgres spans use Service + "-postgres".
	Service string
	// Env is the deployment environment (DD_ENV).
	Env string
	// Version is the service version (DD_VERSION).
	Version string
	// TraceEnabled starts the dd-trace-go tracer in New (DD_TRACE_ENABLED).
	TraceEnabled bool
	// RuntimeMetrics makes the tracer report Go runtime metrics
	// (DD_RUNTIME_METRICS_ENABLED). Only used when TraceEnabled.
	RuntimeMetrics bool
	// AgentHost is the Datadog agent host (DD_AGENT_HOST).
	AgentHost string
	// TraceAgentPort is the trace agent port (DD_TRACE_AGENT_PORT).
	TraceAgentPort string
	// DogStatsdAddr is the DogStatsD address: DD_DOGSTATSD_URL
	// ("unix:///path/dsd.socket" or "udp://host:port") if set, else
	// AgentHost:DD_DOGSTATSD_PORT (default DefaultDogStatsdPort). It is in
	// the form the datadog-go client takes: "host:port" or "unix:///path".
	DogStatsdAddr string
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn,
	// error).
	LogLevel string
	// LogSampleFirst configures log sampling: each second, the first
	// LogSampleFirst lines with the same level and message are written, then
	// only every LogSampleThereafter-th (LOG_SAMPLE_FIRST; 0 disables
	// sampling).
	LogSampleFirst int
	// LogSampleThereafter: see LogSampleFirst (LOG_SAMPLE_THEREAFTER; 0 drops
	// every line past the first LogSampleFirst each second).
	LogSampleThereafter int
	// SlowQuery is the duration above which a statement is logged as a slow
	// query (SLOW_QUERY_THRESHOLD, a Go duration such as "200ms" or a number of
	// milliseconds; 0 disables the log line).
	SlowQuery time.Duration
	// AppName is the postgres application_name the service sets on its
	// connections; the lock wait sampler watches the sessions that carry it
	// (PGAPPNAME).
	AppName string
}

// DefaultDogStatsdPort is the DogStatsD port on AgentHost when no
// DD_DOGSTATSD_URL says otherwise.
const DefaultDogStatsdPort = "8125"

// DefaultConfig is the configuration of an empty environment, the one place
// the telemetry defaults are written.
func DefaultConfig() Config {
	const agentHost = "localhost"
	return Config{
		Service:             "shoplab",
		Env:                 "local",
		Version:             "dev",
		TraceEnabled:        true,
		RuntimeMetrics:      true,
		AgentHost:           agentHost,
		TraceAgentPort:      "8126",
		DogStatsdAddr:       net.JoinHostPort(agentHost, DefaultDogStatsdPort),
		LogLevel:            "info",
		LogSampleFirst:      100,
		LogSampleThereafter: 100,
		SlowQuery:           200 * time.Millisecond,
		AppName:             "shoplab",
	}
}
