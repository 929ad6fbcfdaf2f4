package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// cpuUsage is CPU time spent during a run, by who spent it.
type cpuUsage struct {
	// Service is the shopd process (0 with -url); Postgres the server
	// backends of the run's application_name in the bench database; Client
	// the load generator (vegeta in this process, or pgbench).
	ServiceSec  float64 `json:"serviceSec"`
	PostgresSec float64 `json:"postgresSec"`
	ClientSec   float64 `json:"clientSec"`
	// MachineBusySec is all CPU time spent on the machine (every core, every
	// process, ours and others'), and MachineSec what the cores could give.
	MachineBusySec float64 `json:"machineBusySec"`
	MachineSec     float64 `json:"machineSec"`
}

// cpuProbe snapshots CPU counters before a run; stop computes the usage.
type cpuProbe struct {
	pool      *pgxpool.Pool
	appName   string
	svcPID    int
	client    func() float64
	start     time.Time
	svc       float64
	pg        map[int]float64
	cli       float64
	busy, all float64

	// The backends' latest CPU times, sampled every 200ms: pgbench's
	// sessions end (and leave /proc) before stop is called.
	mu     sync.Mutex
	latest map[int]float64
	done   chan struct{}
	wg     sync.WaitGroup
}

func newCPUProbe(ctx context.Context, pool *pgxpool.Pool, appName string, svcPID int, client func() float64) *cpuProbe {
	p := &cpuProbe{pool: pool, appName: appName, svcPID: svcPID, client: client, start: time.Now()}
	p.svc = benchkit.ProcCPU(svcPID)
	p.pg = backendCPU(ctx, pool, appName)
	p.cli = client()
	p.busy, p.all = machineCPU()
	p.latest = map[int]float64{}
	p.done = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			p.sample(ctx)
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *cpuProbe) sample(ctx context.Context) {
	now := backendCPU(ctx, p.pool, p.appName)
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, t := range now {
		p.latest[pid] = t
	}
}

func (p *cpuProbe) stop(ctx context.Context) cpuUsage {
	var u cpuUsage
	if p.svcPID > 0 {
		u.ServiceSec = benchkit.ProcCPU(p.svcPID) - p.svc
	}
	close(p.done)
	p.wg.Wait()
	p.sample(ctx)
	for pid, t := range p.latest {
		u.PostgresSec += t - p.pg[pid] // a backend born during the run started at 0
	}
	u.ClientSec = p.client() - p.cli
	busy, all := machineCPU()
	u.MachineBusySec, u.MachineSec = busy-p.busy, all-p.all
	return u
}

// backendCPU returns the CPU seconds of each server process serving
// sessions of appName on the bench database.
func backendCPU(ctx context.Context, pool *pgxpool.Pool, appName string) map[int]float64 {
	out := map[int]float64{}
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, appName)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			out[pid] = benchkit.ProcCPU(pid)
		}
	}
	return out
}

// machineCPU returns the busy and total CPU seconds of all cores so far.
func machineCPU() (busy, all float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest times are already in user
			break
		}
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy / benchkit.UserHZ, all / benchkit.UserHZ
}

// selfCPU is this process's CPU seconds (vegeta's workers run here).
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

// childrenCPU is the CPU seconds of this process's finished children
// (pgbench, once waited for).
func childrenCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
