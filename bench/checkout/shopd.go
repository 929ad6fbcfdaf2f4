package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// shopd is a shopd process started for the bench.
type shopd struct {
	cmd  *exec.Cmd
	url  string
	pid  int
	done chan error
}

// startShopd starts `bin serve` on a free port of 127.0.0.1 against dsn,
// with tracing off, and waits for its "listening" log line.
func startShopd(ctx context.Context, bin, dsn, appName string, maxConns int) (*shopd, error) {
	path, err := lookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: run `make build` or pass -shopd", err)
	}
	cmd := exec.CommandContext(ctx, path, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dsn,
		"HOST=127.0.0.1",
		"PORT=0",
		"DB_MAX_CONNS="+strconv.Itoa(maxConns),
		"PGAPPNAME="+appName,
		"DD_TRACE_ENABLED=false",
		"LOG_LEVEL=info",
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &shopd{cmd: cmd, pid: cmd.Process.Pid, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if sent {
				continue
			}
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
				addr <- l.Addr
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("shopd exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("shopd did not start listening within 30s")
	}
}

// stop sends SIGTERM and waits for a graceful exit, killing after 15s.
func (s *shopd) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
