package switches_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/switches"
)

// TestChaosFlagsFile: chaos/flags.json names every switch, and all are off.
func TestChaosFlagsFile(t *testing.T) {
	f, err := switches.ReadFile(filepath.Join("..", "..", "chaos", "flags.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range shop.SwitchNames() {
		if _, ok := f.Flags[name]; !ok {
			t.Errorf("chaos/flags.json lacks %s", name)
		}
	}
	s, err := switches.NewInMemory(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if on := s.Active(context.Background()); len(on) != 0 {
		t.Errorf("switches on by default: %v", on)
	}
}

func TestSet(t *testing.T) {
	ctx := context.Background()
	f, err := switches.Off().With(shop.SwitchRawErrors, " n-plus-one ", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := switches.NewInMemory(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if got := strings.Join(s.Active(ctx), ","); got != "n-plus-one,raw-errors" {
		t.Errorf("active %q", got)
	}
	t.Run("Flip", func(t *testing.T) {
		if err := s.Flip(ctx, shop.SwitchRawErrors, false); err != nil {
			t.Fatal(err)
		}
		if err := s.Flip(ctx, shop.SwitchReportInProcess, true); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(s.Active(ctx), ","); got != "n-plus-one,report-in-process" {
			t.Errorf("active after flips %q", got)
		}
	})
	t.Run("ErrUnknownSwitch", func(t *testing.T) {
		if err := s.Flip(ctx, "no-such", true); shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("Flip = %v, want ENOTFOUND", err)
		}
		if _, err := switches.Off().With("no-such"); err == nil {
			t.Error("With accepted an unknown switch")
		}
	})
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "flags.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("DisabledIsOff", func(t *testing.T) {
		f, err := switches.ReadFile(write(`{"$schema":"x","flags":{"n-plus-one":{"state":"DISABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},"raw-errors":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		s, err := switches.NewInMemory(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		if got := strings.Join(s.Active(context.Background()), ","); got != "raw-errors" {
			t.Errorf("active %q, want raw-errors only", got)
		}
	})
	for name, body := range map[string]string{
		"ErrUnknownSwitch":  `{"flags":{"n-plus-on":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`,
		"ErrBadState":       `{"flags":{"n-plus-one":{"state":"on","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`,
		"ErrUnknownVariant": `{"flags":{"n-plus-one":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"yes"}}}`,
		"ErrNotJSON":        `flags: {}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := switches.ReadFile(write(body)); err == nil {
				t.Errorf("accepted %s", body)
			}
		})
	}
}
