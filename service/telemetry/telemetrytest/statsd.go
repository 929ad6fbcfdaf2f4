package telemetrytest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// WaitTimeout is how long WaitFor and WaitForMatch poll before failing.
const WaitTimeout = 5 * time.Second

// Metric is one DogStatsD sample as received.
type Metric struct {
	// Name is the metric name as sent, with the namespace ("shoplab.http.requests").
	Name string
	// Value is the sample's value (0 for sets, whose value is not a number).
	Value float64
	// Type is the DogStatsD type: "c" count, "g" gauge, "d" distribution,
	// "h" histogram, "ms" timing, "s" set.
	Type string
	// Rate is the sample rate (1 when absent).
	Rate float64
	// Tags are the tags in the order sent ("route:/orders/{userId}").
	Tags []string
}

// HasTags reports whether m carries every one of tags (exact "key:value"
// strings).
func (m Metric) HasTags(tags ...string) bool {
	for _, want := range tags {
		if !slices.Contains(m.Tags, want) {
			return false
		}
	}
	return true
}

// Tag returns the value of m's first tag named key, and whether there is one.
func (m Metric) Tag(key string) (string, bool) {
	for _, t := range m.Tags {
		if k, v, ok := strings.Cut(t, ":"); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// String formats m for test failure messages.
func (m Metric) String() string {
	return fmt.Sprintf("%s:%g|%s|#%s", m.Name, m.Value, m.Type, strings.Join(m.Tags, ","))
}

// StatsdCapture is a DogStatsD server on 127.0.0.1 for tests: it receives UDP
// packets, parses them and keeps every sample. The clients it hands out use
// the service's client options (including client-side aggregation, which
// buffers samples for up to 2s: Flush, or use WaitFor which flushes).
type StatsdCapture struct {
	rec *ddquery.Recorder

	mu      sync.Mutex
	clients []statsd.ClientInterface
}

// NewStatsdCapture listens on a free UDP port of 127.0.0.1 and closes on
// t.Cleanup.
func NewStatsdCapture(t testing.TB) *StatsdCapture {
	t.Helper()
	rec, err := ddquery.NewRecorder()
	if err != nil {
		t.Fatalf("telemetrytest: listen udp: %v", err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	return &StatsdCapture{rec: rec}
}

// Recorder is the capture's ddquery.Recorder, whose timestamped samples
// ddquery evaluates Datadog queries and monitors over.
func (c *StatsdCapture) Recorder() *ddquery.Recorder { return c.rec }

// Addr is the capture's "127.0.0.1:port" address.
func (c *StatsdCapture) Addr() string { return c.rec.Addr() }

// Client returns a real datadog-go client sending to the capture, built by
// telemetry.NewStatsdClient (namespace "shoplab.", tags env:test,
// service:shoplab, version:test, client-side aggregation) without the client's
// own telemetry metrics. It is closed on t.Cleanup and flushed by Flush.
func (c *StatsdCapture) Client(t testing.TB) statsd.ClientInterface {
	t.Helper()
	cfg := telemetry.DefaultConfig()
	cfg.Env, cfg.Version, cfg.DogStatsdAddr = "test", "test", c.Addr()
	client, err := telemetry.NewStatsdClient(cfg, statsd.WithoutTelemetry())
	if err != nil {
		t.Fatalf("telemetrytest: statsd client: %v", err)
	}
	c.mu.Lock()
	c.clients = append(c.clients, client)
	c.mu.Unlock()
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// Flush flushes every client made by Client, so that aggregated and buffered
// samples are sent; they arrive asynchronously (WaitFor polls).
func (c *StatsdCapture) Flush() {
	c.mu.Lock()
	clients := slices.Clone(c.clients)
	c.mu.Unlock()
	for _, cl := range clients {
		if !cl.IsClosed() {
			_ = cl.Flush()
		}
	}
}

// Metrics returns a copy of every sample received so far, in arrival order.
func (c *StatsdCapture) Metrics() []Metric { return metrics(c.rec.Samples()) }

// Reset forgets the samples received so far and zeroes Traffic.
func (c *StatsdCapture) Reset() { c.rec.Reset() }

// Traffic returns the payload bytes and the number of the DogStatsD
// packets received since the capture started or was last Reset (it does
// not flush).
func (c *StatsdCapture) Traffic() (bytes, packets int64) { return c.rec.Traffic() }

// Find returns the samples named name (with or without the "shoplab."
// namespace) that carry all of tags, in arrival order. It does not flush.
func (c *StatsdCapture) Find(name string, tags ...string) []Metric {
	var out []Metric
	for _, m := range c.Metrics() {
		if nameMatches(m.Name, name) && m.HasTags(tags...) {
			out = append(out, m)
		}
	}
	return out
}

// Sum flushes and returns the sum of the values of Find(name, tags...), e.g.
// the total of a count across aggregation flushes. It does not wait.
func (c *StatsdCapture) Sum(name string, tags ...string) float64 {
	c.Flush()
	var s float64
	for _, m := range c.Find(name, tags...) {
		s += m.Value
	}
	return s
}

// WaitForSum flushes and polls until the sum of name's samples with tags
// satisfies ok (counts arrive in separate packets, later than other
// metrics of the same event), and returns it; after WaitTimeout it fails
// the test.
func (c *StatsdCapture) WaitForSum(t testing.TB, ok func(float64) bool, name string, tags ...string) float64 {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		v := c.Sum(name, tags...)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Errorf("telemetrytest: %s%v: sum %v after %v", name, tags, v, WaitTimeout)
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Equals is a WaitForSum condition: the sum is want.
func Equals(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// WaitFor flushes the clients and polls until a sample named name with all of
// tags has arrived, and returns the latest such sample; after WaitTimeout it
// fails the test, listing the samples of that name it did see.
func (c *StatsdCapture) WaitFor(t testing.TB, name string, tags ...string) Metric {
	t.Helper()
	return c.WaitForMatch(t, name, func(Metric) bool { return true }, tags...)
}

// WaitForMatch is WaitFor for a sample that also satisfies match (e.g. a
// gauge value of at least 1).
func (c *StatsdCapture) WaitForMatch(t testing.TB, name string, match func(Metric) bool, tags ...string) Metric {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		c.Flush()
		found := c.Find(name, tags...)
		for i := len(found) - 1; i >= 0; i-- {
			if match(found[i]) {
				return found[i]
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, m := range c.Find(name) {
				seen = append(seen, m.String())
			}
			t.Fatalf("telemetrytest: no matching sample of %s with tags %v after %v; samples of that name: %v",
				name, tags, WaitTimeout, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nameMatches(got, want string) bool {
	return got == want || got == telemetry.Namespace+want
}

// ParseDatagram parses a DogStatsD datagram: metric lines separated by "\n",
// each "name:value[:value...]|type[|@rate][|#tag,tag][|...]". A line with
// several values (as client-side aggregation packs distributions) yields one
// Metric per value. Events and service checks are skipped. It is
// ddquery.ParseDatagrams without the arrival time.
func ParseDatagram(p []byte) []Metric {
	return metrics(ddquery.ParseDatagrams(time.Time{}, p))
}

func metrics(samples []ddquery.Sample) []Metric {
	out := make([]Metric, len(samples))
	for i, s := range samples {
		out[i] = Metric{Name: s.Name, Value: s.Value, Type: s.Type, Rate: s.Rate, Tags: s.Tags}
	}
	return out
}

// Names returns the distinct metric names received, sorted (for debugging).
func (c *StatsdCapture) Names() []string {
	seen := map[string]bool{}
	for _, m := range c.Metrics() {
		seen[m.Name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
