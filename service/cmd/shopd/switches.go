package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry"
)

// openSwitches builds the chaos switches from SWITCHES_FILE and SWITCHES
// (docs/switches.md) on OpenFeature's in-memory provider, and returns them
// with the function that closes them. With APP_ENV=production it refuses
// any switch on and returns a nil board: production never wires the
// switches at all, so nothing (not /admin/switches, not a provider
// flipped elsewhere) can turn one on while it runs.
func openSwitches(ctx context.Context, cfg config) (shop.SwitchBoard, func(), error) {
	f := switches.Off()
	if cfg.SwitchesFile != "" {
		var err error
		if f, err = switches.ReadFile(cfg.SwitchesFile); err != nil {
			return nil, nil, err
		}
	}
	f, err := f.With(cfg.Switches.names()...)
	if err != nil {
		return nil, nil, err
	}
	set, err := switches.NewInMemory(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	closeSet := func() { _ = set.Close(context.WithoutCancel(ctx)) }
	if !cfg.production() {
		return set, closeSet, nil
	}
	active := set.Active(ctx)
	closeSet()
	if len(active) > 0 {
		return nil, nil, fmt.Errorf("chaos switches on (%s): refusing to serve the original's defects with APP_ENV=production (unset SWITCHES and SWITCHES_FILE)",
			strings.Join(active, ", "))
	}
	return nil, func() {}, nil
}

// activeSwitches lists the switches of sw that are on.
func activeSwitches(ctx context.Context, sw shop.Switches) []string {
	var on []string
	for _, name := range shop.SwitchNames() {
		if sw.On(ctx, name) {
			on = append(on, name)
		}
	}
	return on
}

// reportSwitches sends MetricSwitchesActive for every switch (1 on, 0
// off) now and then every interval until ctx ends, so that a switch on
// shows on the dashboards, and one flipped at runtime within interval.
func reportSwitches(ctx context.Context, tel *telemetry.Telemetry, sw shop.Switches, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, name := range shop.SwitchNames() {
			v := 0.0
			if sw.On(ctx, name) {
				v = 1
			}
			_ = tel.Metrics.Gauge(telemetry.MetricSwitchesActive, v, []string{"switch:" + name}, 1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
