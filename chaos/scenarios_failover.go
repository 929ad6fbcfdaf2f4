package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
)

// failover: the primary of a pg_auto_failover formation dies (SIGKILL to
// its pg_autoctl and postmaster) under checkout load. The monitor notices
// and promotes the synchronous standby; shopd, connected with both hosts
// and target_session_attrs=read-write, answers 503 + Retry-After while
// there is no primary and finds the new one by itself. Every order
// acknowledged before the death is on the new primary (synchronous
// replication), none is oversold, every order's mail goes out once. At the
// heal the dead node is started again and rejoins as the new standby.
func failover() *Scenario {
	var mu sync.Mutex
	var killed *FormationNode
	return &Scenario{
		Name:     "failover",
		Incident: "8, the database spikes (symptom database-spike: the primary dies)",
		Summary:  "the PostgreSQL primary dies (SIGKILL) under checkout load; pg_auto_failover promotes the synchronous standby",
		// Full scale runs pg_auto_failover's production timing (about
		// 20 s to notice, up to 30 s more for the demotion to time out):
		// a fault phase of 2 min holds the failover and the monitors'
		// windows; the recovery lets the 5-minute windows empty.
		Full: Phases{Healthy: 30 * time.Second, Fault: 2 * time.Minute, Recovery: 6 * time.Minute},
		// Compressed (TestTiming): the failover took 2.5-7.5 s on this
		// loaded machine (the standby's keeper slow to finish its
		// promotion); the fault leaves it 10 s, and the heal fails the
		// run when no standby was promoted by then (restarting the old
		// node would otherwise end the outage itself). The old node
		// rejoins within the recovery.
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 10 * time.Second, Recovery: 8 * time.Second},
		Formation:  true,
		// Standing the formation up (three initdb, a pg_basebackup) and
		// three more PostgreSQL under load take the machine's two cores
		// from a neighbour: smtp-outage beside it missed its recovery.
		Alone: true,
		// The relay's claims and marks cross the failover: a lease short
		// enough that a claim whose commit reached the standby but whose
		// answer was lost (it stays leased on the new primary) is due
		// again before the run's settle ends; sends bounded below it.
		Shopd: []string{"RELAY_LEASE=4s", "SMTP_TIMEOUT=2s", "RELAY_BACKOFF_BASE=200ms", "RELAY_BACKOFF_MAX=1s"},
		Load:  []Load{healthy(10), retryingBuyers("buyers", 8), probes(10)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				f := e.Formation
				p, err := f.Primary(ctx)
				if err != nil {
					return err
				}
				if p == nil {
					return fmt.Errorf("no primary to kill")
				}
				sc, names, err := f.ReplicationSettings(ctx, p)
				if err != nil {
					return err
				}
				if sc != "on" && sc != "remote_apply" || names == "" {
					return fmt.Errorf("the primary %s does not wait for its standby: synchronous_commit=%s synchronous_standby_names=%q", p.Name, sc, names)
				}
				e.Note("+%s primary %s (port %d): synchronous_commit=%s, synchronous_standby_names=%s", e.sinceStart(), p.Name, p.Port, sc, names)
				mu.Lock()
				killed = p
				mu.Unlock()
				// The monitor's view, noted until the run closes.
				stop, done := make(chan struct{}), make(chan struct{})
				go watchFormation(ctx, e, stop, done)
				e.closes = append(e.closes, func() { close(stop); <-done })
				pm := postmasterPID(p.PGData)
				at := e.sinceStart()
				f.Kill(p)
				e.Note("+%s killed %s: SIGKILL to pg_autoctl and its postmaster (pid %d)", at, p.Name, pm)
				return nil
			},
			Heal: func(ctx context.Context, e *Env) error {
				mu.Lock()
				defer mu.Unlock()
				if killed == nil {
					return nil
				}
				// The failover must be over by now: a new primary that
				// takes writes (wait_primary, until the old node is back).
				p, err := e.Formation.Primary(ctx)
				promoted := err == nil && p != nil && p != killed
				if err := e.Formation.Restart(killed); err != nil {
					return err
				}
				e.Note("+%s %s's pg_autoctl started again: it rejoins as the standby", e.sinceStart(), killed.Name)
				killed = nil
				if !promoted {
					return fmt.Errorf("no standby was promoted by the end of the fault phase (primary %v, %v)", p, err)
				}
				return nil
			},
		},
	}
}

// watchFormation notes every change of the nodes' states as the monitor
// has them (polled every 100 ms) until stop.
func watchFormation(ctx context.Context, e *Env, stop, done chan struct{}) {
	defer close(done)
	last := map[string]string{}
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		states, err := e.Formation.States(qctx)
		cancel()
		if err == nil {
			for _, s := range states {
				now := s.Reported + " -> " + s.Assigned
				if s.Reported == s.Assigned {
					now = s.Reported
				}
				if last[s.Name] != now {
					if last[s.Name] != "" {
						e.Note("+%s monitor: %s %s", e.sinceStart(), s.Name, now)
					}
					last[s.Name] = now
				}
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retryingBuyers check out one unit of the in-stock products in turn, as
// buyers whose client retries: a checkout answered 503 (or not answered)
// is sent again with the same Idempotency-Key and cart once its
// Retry-After has passed, up to 5 times. A checkout whose commit was in
// doubt when the primary died (committed and replicated, its answer lost)
// is then replayed, not placed twice, and its 201 acknowledges the order.
func retryingBuyers(name string, rate int) Load {
	q := &retries{pending: map[string]*retry{}}
	return Load{Name: name, Rate: rate,
		Kinds: func(e *Env) []moncheck.Kind {
			fx := e.Fixture
			return []moncheck.Kind{{Name: "checkout", Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL, t.Header = "POST", e.URL()+"/orders/checkout", moncheck.JSONHeader()
				if r := q.due(time.Now()); r != nil {
					t.Header.Set("Idempotency-Key", r.key)
					t.Header.Set("X-Request-Id", r.key)
					t.Body = r.body
					return
				}
				key := fmt.Sprintf("chaos-%s-%d-%d", strings.ReplaceAll(name, " ", "-"), time.Now().UnixNano(), n)
				body := moncheck.CheckoutBody(fx.Users[n%int64(len(fx.Users))], fx.Products[(n+3)%int64(len(fx.Products))], 1, "")
				q.sent(key, body)
				t.Header.Set("Idempotency-Key", key)
				t.Header.Set("X-Request-Id", key) // echoed: the answer names its key
				t.Body = body
			}}}
		},
		OnResult: func(_ string, r *vegeta.Result) { q.answered(r) },
	}
}

// retries is a retrying client's memory: the checkouts sent and not yet
// answered for good, by key.
type retries struct {
	mu      sync.Mutex
	pending map[string]*retry
	queue   []*retry // due for a retry at their time
}

type retry struct {
	key      string
	body     []byte
	attempts int
	at       time.Time
}

func (q *retries) sent(key string, body []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending[key] = &retry{key: key, body: body, attempts: 1}
}

// due pops a retry whose time has come.
func (q *retries) due(now time.Time) *retry {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, r := range q.queue {
		if !r.at.After(now) {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			r.attempts++
			return r
		}
	}
	return nil
}

func (q *retries) answered(res *vegeta.Result) {
	key := res.Headers.Get("X-Request-Id")
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.pending[key]
	if r == nil {
		return
	}
	if res.Code != http.StatusServiceUnavailable || r.attempts >= 5 {
		delete(q.pending, key)
		return
	}
	wait := time.Second
	if s, err := strconv.Atoi(res.Headers.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	r.at = time.Now().Add(wait)
	q.queue = append(q.queue, r)
}
