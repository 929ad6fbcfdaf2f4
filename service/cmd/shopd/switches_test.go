package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestServeRefusesSwitchesInProduction: with APP_ENV=production, a switch
// turned on by SWITCHES or by SWITCHES_FILE makes serve exit with an error
// naming it, before it connects anywhere; all off, it is no reason to refuse.
func TestServeRefusesSwitchesInProduction(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(file, []byte(`{"flags":{"unlocked-stock":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": "secret-of-thirty-two-characters!", "PORT": "0", "HOST": "127.0.0.1",
		"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", "DD_TRACE_ENABLED": "false"}
	for name, tc := range map[string]struct{ key, value, want string }{
		"Env":  {"SWITCHES", "raw-errors", "raw-errors"},
		"File": {"SWITCHES_FILE", file, "unlocked-stock"},
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{tc.key: tc.value}
			for k, v := range base {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, []string{"shopd", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "production") {
				t.Errorf("serve = %v, want a refusal naming %s and production", err, tc.want)
			}
		})
	}
	t.Run("AllOffNotWired", func(t *testing.T) {
		cfg, err := loadConfig(func(k string) string { return base[k] })
		if err != nil {
			t.Fatal(err)
		}
		board, closeSwitches, err := openSwitches(context.Background(), cfg)
		if err != nil || board != nil {
			t.Fatalf("openSwitches in production = %v, %v; want no board and no error", board, err)
		}
		closeSwitches()
	})
}

func TestSwitchesConfig(t *testing.T) {
	t.Parallel()
	t.Run("ErrUnknownSwitch", func(t *testing.T) {
		_, err := loadConfig(func(k string) string { return map[string]string{"SWITCHES": "n-plus-one,n-plus-two"}[k] })
		if err == nil || !strings.Contains(err.Error(), `SWITCHES="n-plus-one,n-plus-two"`) || !strings.Contains(err.Error(), "n-plus-two") {
			t.Errorf("loadConfig = %v, want an error naming SWITCHES and n-plus-two", err)
		}
	})
	t.Run("OnOverFile", func(t *testing.T) {
		env := map[string]string{"SWITCHES_FILE": filepath.Join("..", "..", "..", "chaos", "flags.json"), "SWITCHES": "n-plus-one, report-in-process"}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		board, closeSwitches, err := openSwitches(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer closeSwitches()
		if got := strings.Join(activeSwitches(context.Background(), board), ","); got != "n-plus-one,report-in-process" {
			t.Errorf("active %q", got)
		}
	})
}

// TestReportSwitches: every switch gets a switches.active gauge, 1 when on.
func TestReportSwitches(t *testing.T) {
	t.Parallel()
	tel, stats, _ := telemetrytest.New(t)
	f, _ := switches.Off().With(shop.SwitchUnlockedStock)
	sw, err := switches.NewInMemory(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { reportSwitches(ctx, tel, sw, time.Hour); close(done) }()
	for _, name := range shop.SwitchNames() {
		want := 0.0
		if name == shop.SwitchUnlockedStock {
			want = 1
		}
		m := stats.WaitFor(t, telemetry.MetricSwitchesActive, "switch:"+name)
		if m.Value != want || m.Type != "g" {
			t.Errorf("%s: %s, want gauge %v", name, m, want)
		}
	}
	cancel()
	<-done
}
