package httpapi_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

// testMemoryBudgets checks that the service's heap does not grow with the
// size of a request that streams: a 100,000-row import and a
// 100,000-order report download each stay under the same fixed bound as
// their 10,000 versions, and within twice theirs plus 4 MiB (README:
// Budgets). The measured value is the peak of the live heap (as each GC
// during the request marked it) above the live heap before the request.
// The downloads also give the round trips per 250 lines.
func testMemoryBudgets(t *testing.T, g *budgetGate, e *budgetEnv) {
	ctx := t.Context()
	type run struct {
		endpoint, name string
		req            func() *http.Request
		status         int
		lines          int64 // a download's order lines
	}
	growth := map[string][]uint64{}
	trips := map[string][][2]int64{}
	var runs []run
	for _, n := range []int{10_000, 100_000} {
		runs = append(runs, run{
			endpoint: "POST /admin/products/import", name: fmt.Sprintf("NDJSON, %d rows, streamed", n), status: 201,
			req: func() *http.Request {
				r, _ := http.NewRequest("POST", "/admin/products/import", &ndjsonGen{n: n, prefix: "Mem" + strconv.Itoa(n)})
				r.Header.Set("Content-Type", "application/x-ndjson")
				return r
			},
		})
	}
	for _, n := range []int{10_000, 100_000} {
		start := time.Now()
		user, err := e.db.SeedBulkUser(ctx, fmt.Sprintf("budget.bulk%d@example.com", n), "Bulk", n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seeded a user with %d orders in %v", n, time.Since(start).Round(time.Millisecond))
		var lines int64
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.customer_id = $1`, user).Scan(&lines); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run{lines: lines,
			endpoint: "GET /reports/orders/{userId}", name: fmt.Sprintf("csv download, %d orders", n), status: 200,
			req: func() *http.Request {
				r, _ := http.NewRequest("GET", "/reports/orders/"+user+"?format=csv", nil)
				return r
			},
		})
	}
	for _, r := range runs {
		w := newSink()
		start := time.Now()
		var objects uint64
		gcs := numGC()
		s0, r0 := e.counter.snapshot()
		req := r.req()
		live := peakGrowth(liveHeap, func() { objects = peakGrowth(heapObjects, func() { e.h.ServeHTTP(w, req) }) })
		s1, r1 := e.counter.snapshot()
		// Held to the document after the measurement; the bodies are
		// too large to keep: their status and headers are checked.
		checkServed(t, req, nil, w.status, w.header, nil, false)
		if w.status != r.status {
			t.Fatalf("%s [%s]: status %d: %s", r.endpoint, r.name, w.status, w.head.String())
		}
		t.Logf("%s [%s]: %d bytes out in %v, %d statements in %d round trips; peak growth: live heap %.1f MiB (%d GCs), heap objects %.1f MiB",
			r.endpoint, r.name, w.n, time.Since(start).Round(time.Millisecond), s1-s0, r1-r0,
			float64(live)/(1<<20), numGC()-gcs, float64(objects)/(1<<20))
		g.check(t, r.endpoint, metricHeapGrowth, r.name+raceSuffix, float64(live))
		growth[r.endpoint] = append(growth[r.endpoint], live)
		if r.lines > 0 {
			trips[r.endpoint] = append(trips[r.endpoint], [2]int64{r.lines, r1 - r0})
		}
	}
	// Independent of size: 10 times the rows may not take much more.
	for endpoint, gs := range growth {
		if small, large := gs[0], gs[1]; large > 2*small+4<<20 {
			t.Errorf("%s: the heap grows with the request's size: %.1f MiB at 100,000 vs %.1f MiB at 10,000 (bound: twice, plus 4 MiB); %s",
				endpoint, float64(large)/(1<<20), float64(small)/(1<<20), updateHint)
		}
	}
	// A download fetches 250 lines per round trip: the round trips that
	// 90,000 more orders add, per 250 of their lines.
	for endpoint, tr := range trips {
		small, large := tr[0], tr[1]
		per250 := float64(large[1]-small[1]) / float64(large[0]-small[0]) * 250
		g.check(t, endpoint, metricRoundTrips, "csv download, per 250 lines (100,000 vs 10,000 orders)", math.Round(per250*100)/100)
	}
}

// The runtime/metrics of the heap that peakGrowth samples.
const (
	// liveHeap is the heap marked live by the last GC: what the process
	// retains, sampled at each GC's end.
	liveHeap = "/gc/heap/live:bytes"
	// heapObjects is every allocated object, live or not yet swept: it
	// follows the GC's pacing as much as the request (logged only).
	heapObjects = "/memory/classes/heap/objects:bytes"
)

func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

// peakGrowth runs f and returns the peak of the runtime metric name (a
// heap size in bytes) during f above its value before it (after a GC),
// sampled every millisecond through runtime/metrics, which does not stop
// the world.
func peakGrowth(name string, f func()) uint64 {
	runtime.GC()
	read := func() uint64 {
		s := []metrics.Sample{{Name: name}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	base := read()
	stop, peak := make(chan struct{}), make(chan uint64)
	go func() {
		max := base
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-tick.C:
				if v := read(); v > max {
					max = v
				}
			}
		}
	}()
	f()
	close(stop)
	return <-peak - base
}

// ndjsonGen is an import body of n NDJSON rows made as it is read, so that
// the test itself holds no body.
type ndjsonGen struct {
	n, i   int
	prefix string
	line   []byte
}

func (g *ndjsonGen) Read(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		if len(g.line) == 0 {
			if g.i == g.n {
				if written == 0 {
					return 0, io.EOF
				}
				break
			}
			g.line = fmt.Appendf(g.line[:0], `{"name":"%s %d","price":1.5,"inventory":3}`+"\n", g.prefix, g.i)
			g.i++
		}
		c := copy(p[written:], g.line)
		written += c
		g.line = g.line[c:]
	}
	return written, nil
}
