// Package telemetry holds shoplab's observability plumbing: the zap logger, the
// DogStatsD client, the dd-trace-go tracer's start and stop, a pgx tracer that
// names, times and traces every statement, pool and lock-wait metrics, and the
// HTTP middleware for metrics and access logs. It knows nothing of the shop
// domain and keeps no package-level state: everything hangs off a *Telemetry.
//
// The one process-wide piece is dd-trace-go's tracer (and its logger), which
// the library keeps globally; New starts it and Close stops it.
//
// Metric names are the Metric* constants of metrics.go; docs/metrics.md is the
// catalogue.
package telemetry

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Namespace is the prefix the statsd client adds to every metric name.
const Namespace = "shoplab."

// Telemetry bundles the logger, the metrics client and the configuration the
// service passes around. Build it with New (or NewForTest) and Close it at
// shutdown.
type Telemetry struct {
	// Log is the base logger. Inside a request use Logger(ctx, t.Log) so that
	// lines carry the trace and span ids.
	Log *zap.Logger
	// Metrics is the DogStatsD client: namespace "shoplab.", global tags
	// env, service and version. Name metrics with the Metric* constants.
	Metrics statsd.ClientInterface
	// Config is the configuration Telemetry was built from.
	Config Config

	tracerStarted bool
	closeOnce     sync.Once
	closeErr      error
}

// New builds the logger (JSON lines to w, at cfg.LogLevel, sampled per cfg),
// the statsd client and, when cfg.TraceEnabled, starts the global dd-trace-go
// tracer with runtime metrics (cfg.RuntimeMetrics). dd-trace-go's own log
// lines are routed to the logger (component "ddtrace", at most warn level and
// at most a few per minute), so a missing agent neither fails New nor floods
// the log. A statsd address that cannot be resolved (agent host not in DNS
// yet) is logged and metrics are dropped rather than failing the service.
// It returns an error if cfg.LogLevel is invalid or the tracer refuses to
// start.
func New(cfg Config, w io.Writer) (*Telemetry, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("telemetry: log level: %w", err)
	}
	t := &Telemetry{Config: cfg}

	metrics, statsdErr := NewStatsdClient(cfg)
	if statsdErr != nil {
		t.Metrics = &statsd.NoOpClient{}
	} else {
		t.Metrics = metrics
	}

	core := zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), zapcore.Lock(zapcore.AddSync(w)), level)
	if cfg.LogSampleFirst > 0 {
		dropped := t.Metrics
		core = zapcore.NewSamplerWithOptions(core, time.Second, cfg.LogSampleFirst, cfg.LogSampleThereafter,
			zapcore.SamplerHook(func(e zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					_ = dropped.Incr(MetricLogDropped, []string{"level:" + e.Level.String()}, 1)
				}
			}))
	}
	t.Log = zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)).With(serviceFields(cfg)...)

	if statsdErr != nil {
		t.Log.Warn("statsd client unavailable, metrics are dropped", zap.String("addr", cfg.DogStatsdAddr), zap.Error(statsdErr))
	}

	if cfg.TraceEnabled {
		opts := []tracer.StartOption{
			tracer.WithService(cfg.Service),
			tracer.WithEnv(cfg.Env),
			tracer.WithServiceVersion(cfg.Version),
			tracer.WithAgentAddr(net.JoinHostPort(cfg.AgentHost, cfg.TraceAgentPort)),
			tracer.WithDogstatsdAddr(cfg.DogStatsdAddr),
			tracer.WithLogStartup(false),
			tracer.WithLogger(ddLogger(t.Log)),
		}
		if cfg.RuntimeMetrics {
			opts = append(opts, tracer.WithRuntimeMetrics())
		}
		if err := tracer.Start(opts...); err != nil {
			_ = t.Metrics.Close()
			return nil, fmt.Errorf("telemetry: start tracer: %w", err)
		}
		t.tracerStarted = true
	}
	return t, nil
}

// NewForTest builds a Telemetry from parts without starting a tracer: log is
// typically a zap observer logger, metrics a client pointed at a test capture
// (see package telemetrytest); nil parts become a no-op logger or client.
// Close closes metrics.
func NewForTest(log *zap.Logger, metrics statsd.ClientInterface, cfg Config) *Telemetry {
	if log == nil {
		log = zap.NewNop()
	}
	if metrics == nil {
		metrics = &statsd.NoOpClient{}
	}
	return &Telemetry{Log: log.With(serviceFields(cfg)...), Metrics: metrics, Config: cfg}
}

// Close stops the tracer (flushing pending traces) if New started it, then
// flushes and closes the statsd client. It is safe to call more than once and
// returns the statsd client's close error, if any.
func (t *Telemetry) Close() error {
	t.closeOnce.Do(func() {
		if t.tracerStarted {
			tracer.Stop()
			// dd-trace-go keeps its logger globally; stop it writing to ours.
			tracer.UseLogger(tracer.AdaptLogger(func(tracer.LogLevel, string, ...any) {}))
		}
		if t.Metrics != nil {
			t.closeErr = t.Metrics.Close()
		}
		if t.Log != nil {
			_ = t.Log.Sync()
		}
	})
	return t.closeErr
}

// NewStatsdClient returns a DogStatsD client for cfg.DogStatsdAddr with the
// options the service uses: namespace "shoplab.", global tags env, service and
// version, and client-side aggregation for every metric type (counts and
// gauges are aggregated, distributions buffered, and flushed every 2s or on
// Flush/Close). extra options are appended (tests add statsd.WithoutTelemetry).
// UDP is fire-and-forget: with no agent listening, sends fail silently.
func NewStatsdClient(cfg Config, extra ...statsd.Option) (*statsd.Client, error) {
	opts := []statsd.Option{
		statsd.WithNamespace(Namespace),
		statsd.WithTags(globalTags(cfg)),
		statsd.WithExtendedClientSideAggregation(),
	}
	opts = append(opts, extra...)
	c, err := statsd.New(cfg.DogStatsdAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: statsd client for %q: %w", cfg.DogStatsdAddr, err)
	}
	return c, nil
}

// globalTags returns env/service/version tags. datadog-go already adds them
// from the DD_ENV/DD_SERVICE/DD_VERSION process environment, so a tag is only
// added here when the process environment does not already carry that value.
func globalTags(cfg Config) []string {
	var tags []string
	for _, kv := range [][3]string{
		{"DD_ENV", "env", cfg.Env},
		{"DD_SERVICE", "service", cfg.Service},
		{"DD_VERSION", "version", cfg.Version},
	} {
		if kv[2] != "" && os.Getenv(kv[0]) != kv[2] {
			tags = append(tags, kv[1]+":"+kv[2])
		}
	}
	return tags
}

// EncoderConfig is the JSON encoding of log lines: keys Datadog's log
// pipeline recognises without configuration (timestamp, level, msg, logger,
// caller, stacktrace) and RFC 3339 timestamps.
func EncoderConfig() zapcore.EncoderConfig {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "timestamp"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.MillisDurationEncoder
	return ec
}

func serviceFields(cfg Config) []zap.Field {
	return []zap.Field{
		zap.String("dd.service", cfg.Service),
		zap.String("dd.env", cfg.Env),
		zap.String("dd.version", cfg.Version),
	}
}

// ddLogger adapts dd-trace-go's logger to zap: debug and info lines become
// debug, warnings and errors (agent unreachable, lost traces) become warnings,
// and at most ten lines per minute get through.
func ddLogger(base *zap.Logger) tracer.Logger {
	l := base.Named("ddtrace").WithOptions(
		zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(c, time.Minute, 10, 0)
		}),
		zap.WithCaller(false),
		zap.AddStacktrace(zapcore.FatalLevel),
	)
	return tracer.AdaptLogger(func(lvl tracer.LogLevel, msg string, _ ...any) {
		text := trimDDPrefix(msg)
		switch lvl.String() {
		case "WARN", "ERROR":
			l.Warn("datadog tracer", zap.String("ddtrace", text))
		default:
			l.Debug("datadog tracer", zap.String("ddtrace", text))
		}
	})
}

// trimDDPrefix removes "Datadog Tracer v2.x.y LEVEL: " from a tracer message.
func trimDDPrefix(msg string) string {
	if !strings.HasPrefix(msg, "Datadog Tracer ") {
		return msg
	}
	if i := strings.Index(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
