package chaos

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"
)

// Outage is the window in which one kind of request failed after the
// fault was injected (Expectations.Outage): the timeline of a failover.
// Times are seconds since the run started; a request is placed at the
// time it was sent, a success at the time it was answered.
type Outage struct {
	Load string `json:"load"`
	Kind string `json:"kind"`
	// InjectS is when the fault was injected.
	InjectS float64 `json:"inject_s"`
	// FirstFailS and LastFailS are the first and the last failed request
	// (not 2xx, not 4xx) sent after the injection; FirstOKAfterS is the
	// first 2xx answered after LastFailS.
	FirstFailS    float64 `json:"first_fail_s"`
	LastFailS     float64 `json:"last_fail_s"`
	FirstOKAfterS float64 `json:"first_ok_after_s"`
	// DowntimeS is FirstOKAfterS - FirstFailS: how long the requests
	// failed; FromInjectS is FirstOKAfterS - InjectS.
	DowntimeS   float64 `json:"downtime_s"`
	FromInjectS float64 `json:"from_inject_s"`
	// Failed counts the failed requests by status ("0": transport error);
	// Unavailable those that were 503 with Retry-After; Other5xx every
	// other 5xx (must be 0); Transport the transport errors.
	Failed      map[string]int `json:"failed"`
	Unavailable int            `json:"unavailable_with_retry_after"`
	Other5xx    int            `json:"other_5xx"`
	Transport   int            `json:"transport_errors"`
	// Succeeded counts the 2xx answers of Load/Kind over the whole run
	// (for checkouts: the acknowledged orders, replays included).
	Succeeded int     `json:"succeeded"`
	MaxS      float64 `json:"max_s"`
	OK        bool    `json:"ok"`
}

// measureOutage measures Expectations.Outage from injected on.
func (r *Report) measureOutage(x *Expectations, rec *recorder, injected time.Time) {
	if x.Outage == nil {
		return
	}
	o := &Outage{Load: x.Outage.Load, Kind: x.Outage.Kind, InjectS: r.exact(injected), MaxS: x.Outage.MaxS, Failed: map[string]int{}}
	if r.Factor > 1 {
		o.MaxS = x.Outage.CompressedMaxS
	}
	rec.mu.Lock()
	var mine []result
	for _, res := range rec.results {
		if res.Load == o.Load && res.Kind == o.Kind {
			mine = append(mine, res)
		}
	}
	rec.mu.Unlock()
	sort.Slice(mine, func(i, j int) bool { return mine[i].At.Before(mine[j].At) })
	var first, last time.Time
	for _, res := range mine {
		if res.Code/100 == 2 {
			o.Succeeded++
		}
		if res.At.Before(injected) || res.Code/100 == 2 || res.Code/100 == 4 {
			continue
		}
		if first.IsZero() {
			first = res.At
		}
		last = res.At
		o.Failed[fmt.Sprint(res.Code)]++
		switch {
		case res.Code == 0:
			o.Transport++
		case res.Code == http.StatusServiceUnavailable && res.RetryAfter:
			o.Unavailable++
		case res.Code >= 500:
			o.Other5xx++
		}
	}
	var okAfter time.Time
	for _, res := range mine {
		done := res.At.Add(res.Latency)
		if res.Code/100 == 2 && !last.IsZero() && done.After(last) && (okAfter.IsZero() || done.Before(okAfter)) {
			okAfter = done
		}
	}
	r.Outage = o
	if first.IsZero() {
		r.Failures = append(r.Failures, fmt.Sprintf("outage: no %s/%s failed after the fault: it did not happen", o.Load, o.Kind))
		return
	}
	o.FirstFailS, o.LastFailS = r.exact(first), r.exact(last)
	if okAfter.IsZero() {
		r.Failures = append(r.Failures, fmt.Sprintf("outage: no 2xx of %s/%s after its last failure", o.Load, o.Kind))
		return
	}
	o.FirstOKAfterS = r.exact(okAfter)
	o.DowntimeS = round3(okAfter.Sub(first).Seconds())
	o.FromInjectS = round3(okAfter.Sub(injected).Seconds())
	o.OK = o.DowntimeS <= o.MaxS && o.Other5xx == 0 && o.Transport == 0
	if o.DowntimeS > o.MaxS {
		r.Failures = append(r.Failures, fmt.Sprintf("outage: %s/%s down %.3f s, want at most %g s", o.Load, o.Kind, o.DowntimeS, o.MaxS))
	}
	if o.Other5xx > 0 || o.Transport > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("outage: %d 5xx other than 503 + Retry-After and %d transport errors", o.Other5xx, o.Transport))
	}
}

func (r *Report) exact(t time.Time) float64 { return round3(t.Sub(r.Start).Seconds()) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func (o *Outage) print(w io.Writer) {
	fmt.Fprintf(w, "\nOUTAGE of %s/%s\n", o.Load, o.Kind)
	fmt.Fprintf(w, "  fault injected        +%.3fs\n", o.InjectS)
	if o.FirstFailS == 0 {
		fmt.Fprintln(w, "  no failure after it")
		return
	}
	fmt.Fprintf(w, "  first failed request  +%.3fs\n", o.FirstFailS)
	fmt.Fprintf(w, "  last failed request   +%.3fs\n", o.LastFailS)
	if o.FirstOKAfterS > 0 {
		fmt.Fprintf(w, "  first 2xx after it    +%.3fs\n", o.FirstOKAfterS)
		fmt.Fprintf(w, "  downtime              %.3f s (first failure to first 2xx after the last; %.3f s from the fault; bound %g s)\n", o.DowntimeS, o.FromInjectS, o.MaxS)
	}
	fmt.Fprintf(w, "  failed                %s: %d 503 with Retry-After, %d other 5xx, %d transport errors\n", counts(o.Failed), o.Unavailable, o.Other5xx, o.Transport)
	fmt.Fprintf(w, "  2xx over the run      %d\n", o.Succeeded)
}
