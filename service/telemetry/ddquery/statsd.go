package ddquery

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is one DogStatsD value as received: a datagram line with several
// values ("name:1:2:3|d") yields one Sample per value.
type Sample struct {
	// Time is when the packet carrying the sample arrived.
	Time time.Time
	// Name is the metric name as sent, with any namespace ("shoplab.http.requests").
	Name string
	// Type is the DogStatsD type: "c" count, "g" gauge, "d" distribution,
	// "h" histogram, "ms" timing, "s" set.
	Type string
	// Value is the sample's value (0 for sets, whose value is not a number).
	Value float64
	// Rate is the sample rate (1 when absent): a count of v at rate r stands
	// for v/r events, a distribution value at rate r for 1/r values.
	Rate float64
	// Tags are the tags in the order sent, not normalised ("route:/orders/{userId}").
	Tags []string
}

// ParseDatagrams parses a DogStatsD datagram received at t: metric lines
// separated by "\n", each "name:value[:value...]|type[|@rate][|#tag,tag][|...]"
// (protocol v1.1 packs several values in one line; the type, rate and tags
// are shared). Events ("_e{"), service checks ("_sc|"), lines without a
// type, and values that are not numbers are skipped; set values ("|s") are
// kept with Value 0. It never fails: what it cannot read it leaves out.
func ParseDatagrams(t time.Time, packet []byte) []Sample {
	var out []Sample
	for _, line := range strings.Split(string(packet), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "_e{") || strings.HasPrefix(line, "_sc|") {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		parts := strings.Split(rest, "|")
		if len(parts) < 2 {
			continue
		}
		s := Sample{Time: t, Name: name, Type: parts[1], Rate: 1}
		for _, f := range parts[2:] {
			switch {
			case strings.HasPrefix(f, "@"):
				if r, err := strconv.ParseFloat(f[1:], 64); err == nil {
					s.Rate = r
				}
			case strings.HasPrefix(f, "#"):
				if f != "#" {
					s.Tags = strings.Split(f[1:], ",")
				}
			}
		}
		for _, v := range strings.Split(parts[0], ":") {
			sv := s
			sv.Tags = slices.Clone(s.Tags)
			if s.Type != "s" {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					continue
				}
				sv.Value = f
			}
			out = append(out, sv)
		}
	}
	return out
}

// Recorder is a DogStatsD server on 127.0.0.1 for programs and tests: it
// receives UDP packets, timestamps each on arrival, parses it with
// ParseDatagrams and keeps every sample. It is safe for concurrent use.
type Recorder struct {
	conn *net.UDPConn
	done chan struct{}
	now  func() time.Time

	mu      sync.Mutex
	samples []Sample
	bytes   int64         // payload bytes of the packets received since Reset
	packets int64         // packets received since Reset
	changed chan struct{} // closed and replaced when samples arrive
}

// NewRecorder listens on a free UDP port of 127.0.0.1. It returns the
// listen error, if any. Close it when done.
func NewRecorder() (*Recorder, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	r := &Recorder{conn: conn, done: make(chan struct{}), now: time.Now, changed: make(chan struct{})}
	go r.read()
	return r, nil
}

func (r *Recorder) read() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ss := ParseDatagrams(r.now(), buf[:n])
		r.mu.Lock()
		r.samples = append(r.samples, ss...)
		r.bytes += int64(n)
		r.packets++
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

// Addr is the recorder's "127.0.0.1:port" address, as datadog-go's
// statsd.New takes it.
func (r *Recorder) Addr() string { return r.conn.LocalAddr().String() }

// Samples returns a copy of every sample received so far, in arrival order.
func (r *Recorder) Samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.samples)
}

// Traffic returns the payload bytes and the number of the UDP packets
// received since the recorder started or was last Reset: what the
// client's traffic to the agent costs, before any parsing.
func (r *Recorder) Traffic() (bytes, packets int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes, r.packets
}

// Wait blocks until ok returns true for the samples received so far (it
// is called again each time a packet arrives) and returns them, or
// returns ctx's error with the samples received so far.
func (r *Recorder) Wait(ctx context.Context, ok func([]Sample) bool) ([]Sample, error) {
	for {
		r.mu.Lock()
		samples, changed := slices.Clone(r.samples), r.changed
		r.mu.Unlock()
		if ok(samples) {
			return samples, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return samples, ctx.Err()
		}
	}
}

// Reset forgets the samples received so far and zeroes Traffic.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.samples = nil
	r.bytes, r.packets = 0, 0
	r.mu.Unlock()
}

// Close stops listening and waits for the reading goroutine to end. The
// samples stay readable. It returns the error of closing the socket.
func (r *Recorder) Close() error {
	err := r.conn.Close()
	<-r.done
	return err
}
