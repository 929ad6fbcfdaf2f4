package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds of starting and stopping shopd.
const (
	// StartTimeout bounds StartShopd: from exec until /health answers 200.
	StartTimeout = 30 * time.Second
	// StopGrace is how long Stop waits for a graceful exit after SIGTERM
	// before it kills the process.
	StopGrace = 20 * time.Second
)

// ShopdPath resolves bin, the shopd binary, the way exec does (a path with
// a slash is checked as is, a bare name is looked up in $PATH), checks that
// it is an executable file and returns its absolute path. Benches call it
// first so that a missing binary fails before any database work.
func ShopdPath(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("shopd binary: %w (run `make build` or pass -shopd)", err)
	}
	return filepath.Abs(p)
}

// ShopdConfig says how to start shopd.
type ShopdConfig struct {
	// Bin is the shopd binary (see ShopdPath).
	Bin string
	// DatabaseURL is shopd's DATABASE_URL.
	DatabaseURL string
	// Env is more environment, KEY=VALUE, on top of the defaults (a key
	// given here wins): DB_MAX_CONNS, PGAPPNAME, ADMIN_TOKEN, ...
	Env []string
	// LogPath, when set, is a file that receives shopd's whole output,
	// stdout (its JSON log) and stderr. Otherwise its log is read only for
	// the "listening" line and its stderr goes to this process's stderr.
	LogPath string
}

// Shopd is a `shopd serve` process started by StartShopd.
type Shopd struct {
	// PID is the process id, for /proc.
	PID int
	// URL is the base URL it serves on: http://127.0.0.1:<port>.
	URL string
	// LogPath is ShopdConfig.LogPath.
	LogPath string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // its exit status, once exited is closed
}

// StartShopd starts `shopd serve` listening on a free port of 127.0.0.1
// (PORT=0) against cfg.DatabaseURL, and returns once it has logged where it
// listens and GET /health answers 200. The environment is this process's,
// then HOST, PORT, LOG_LEVEL=info, BUYER_AUTH=off, tracing off (DD_TRACE_ENABLED=false,
// DD_RUNTIME_METRICS_ENABLED=false) and DogStatsD metrics sent to the
// discard port of 127.0.0.1 (DD_AGENT_HOST, DD_DOGSTATSD_PORT=9): the
// metrics are still emitted, at their cost, but reach nobody's agent; then
// cfg.Env. It fails when shopd exits first, after StartTimeout, or when ctx
// ends, and then leaves no process behind. The caller must Stop it.
func StartShopd(ctx context.Context, cfg ShopdConfig) (*Shopd, error) {
	bin, err := ShopdPath(cfg.Bin)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+cfg.DatabaseURL,
		"HOST=127.0.0.1",
		"PORT=0",
		"LOG_LEVEL=info",
		"DD_TRACE_ENABLED=false",
		"DD_RUNTIME_METRICS_ENABLED=false",
		"DD_AGENT_HOST=127.0.0.1",
		"DD_DOGSTATSD_PORT=9", // discard
		// The load generators act for many buyers by id, as the
		// original's clients do (docs/security.md); cfg.Env may turn it
		// back on.
		"BUYER_AUTH=off",
	)
	cmd.Env = append(cmd.Env, cfg.Env...)
	var logFile *os.File
	cmd.Stderr = os.Stderr
	if cfg.LogPath != "" {
		if logFile, err = os.Create(cfg.LogPath); err != nil {
			return nil, err
		}
		cmd.Stderr = logFile
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		closeFile(logFile)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		closeFile(logFile)
		return nil, err
	}
	s := &Shopd{PID: cmd.Process.Pid, LogPath: cfg.LogPath, cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		// Read the log to its end (shopd's exit), then wait: Wait closes
		// the pipe, so it must come after the last read.
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if logFile != nil {
				_, _ = logFile.Write(append(sc.Bytes(), '\n'))
			}
			if sent {
				continue
			}
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" && l.Addr != "" {
				addr <- l.Addr
				sent = true
			}
		}
		var w io.Writer = io.Discard
		if logFile != nil {
			w = logFile
		}
		_, _ = io.Copy(w, stdout) // a line too long for the scanner
		s.waitErr = cmd.Wait()
		closeFile(logFile)
		close(s.exited)
	}()
	if err := s.ready(ctx, addr); err != nil {
		s.Stop()
		if s.LogPath != "" {
			err = fmt.Errorf("%w; see %s", err, s.LogPath)
		}
		return nil, err
	}
	return s, nil
}

// ready waits for the "listening" line, then for GET /health to answer
// 200, within StartTimeout.
func (s *Shopd) ready(ctx context.Context, addr <-chan string) error {
	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-s.exited:
		return fmt.Errorf("shopd exited before listening: %v", s.waitErr)
	case <-deadline.C:
		return fmt.Errorf("shopd did not log its address within %s", StartTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		select {
		case <-s.exited:
			return fmt.Errorf("shopd exited before /health answered: %v", s.waitErr)
		case <-deadline.C:
			return fmt.Errorf("shopd's /health did not answer 200 within %s: %s", StartTimeout, last)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends shopd SIGTERM and waits for its graceful exit, killing it
// after StopGrace. Calling it again, or after shopd exited, is harmless.
func (s *Shopd) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(StopGrace):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Memory is a process's resident memory, in bytes.
type Memory struct {
	// RSS is resident now (VmRSS).
	RSS int64
	// Peak is the largest RSS since the process started or since its last
	// ResetPeak (VmHWM).
	Peak int64
}

// Memory reads shopd's resident memory from /proc/<pid>/status (Linux). It
// fails when the file cannot be read or lacks either line.
func (s *Shopd) Memory() (Memory, error) {
	return readMemory(s.PID)
}

// ResetPeak resets shopd's peak resident memory (VmHWM) to its current RSS
// by writing 5 to /proc/<pid>/clear_refs (Linux 4.0 and later), so that the
// next Memory().Peak is the peak since this call. Its error says that the
// kernel or the permissions do not allow it; Peak then stays the peak since
// the start.
func (s *Shopd) ResetPeak() error {
	return resetPeak(s.PID)
}

func readMemory(pid int) (Memory, error) {
	path := filepath.Join("/proc", strconv.Itoa(pid), "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of pid %d (Linux /proc needed): %w", pid, err)
	}
	var m Memory
	found := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%s: %s: %w", path, k, err)
		}
		if k == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.Peak = kb << 10
		}
		found[k] = true
	}
	if !found["VmRSS"] || !found["VmHWM"] {
		return Memory{}, errors.New(path + ": no VmRSS or VmHWM line")
	}
	return m, nil
}

func resetPeak(pid int) error {
	return os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
}

func closeFile(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}
