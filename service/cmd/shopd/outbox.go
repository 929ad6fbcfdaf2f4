package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/telemetry"
)

// newRelay builds the outbox relay from the configuration.
func newRelay(cfg config, db *postgres.DB, tel *telemetry.Telemetry) (*postgres.Relay, error) {
	sender, err := mail.NewSender(cfg.Mail)
	if err != nil {
		return nil, err
	}
	return db.NewRelay(sender, tel, cfg.Relay)
}

// startOutbox runs what `serve` does for the outbox until ctx ends: a relay
// when RELAY_ENABLED and SMTP_ADDR are set, otherwise only the outbox gauges
// (so that mails owed and not sent still show). The channel closes when it
// has stopped (a relay finishes the send in progress first).
func startOutbox(ctx context.Context, cfg config, db *postgres.DB, tel *telemetry.Telemetry) (<-chan struct{}, error) {
	done := make(chan struct{})
	if cfg.RelayEnabled && cfg.Mail.Addr != "" {
		relay, err := newRelay(cfg, db, tel)
		if err != nil {
			return nil, err
		}
		go func() {
			defer close(done)
			_ = relay.Run(ctx)
		}()
		return done, nil
	}
	if cfg.RelayEnabled {
		tel.Log.Warn("SMTP_ADDR is not set: order confirmations are kept in the outbox and not sent; set SMTP_ADDR (make run starts Mailpit) or run `shopd relay`")
	} else {
		tel.Log.Info("RELAY_ENABLED=false: this process sends no order confirmations; run `shopd relay`")
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(cfg.Relay.StatsInterval)
		defer tick.Stop()
		for {
			if _, err := db.ReportOutboxStats(ctx, tel); err != nil && ctx.Err() == nil {
				tel.Log.Warn("outbox stats failed", zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done, nil
}

// relay is `shopd relay`: an outbox relay on its own, until SIGTERM/SIGINT.
func relay(ctx context.Context, cfg config, stdout io.Writer) error {
	if cfg.Mail.Addr == "" {
		return fmt.Errorf("relay: SMTP_ADDR is not set")
	}
	tcfg := cfg.Telemetry
	cfg.AppName += ".relay" // its sessions, apart in pg_stat_activity
	tcfg.AppName = cfg.AppName
	tel, err := telemetry.New(tcfg, stdout)
	if err != nil {
		return err
	}
	defer tel.Close()
	pool, err := openPool(ctx, cfg, tel)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := newRelay(cfg, postgres.New(pool), tel)
	if err != nil {
		return err
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go telemetry.ReportPoolStats(bg, tel, "main", pool, 10*time.Second)
	return r.Run(ctx)
}

// outbox is `shopd outbox status|requeue-dead [order-id...]`.
func outbox(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("outbox needs status or requeue-dead")
	}
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := postgres.New(pool)
	switch args[0] {
	case "status":
		s, err := db.OutboxStatus(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pending %d (due now %d), dead %d\n", s.Pending, s.Due, s.Dead)
		if s.Pending > 0 {
			fmt.Fprintf(stdout, "oldest pending: order %s, %s old\n", s.OldestPendingOrder, s.OldestPending.Round(time.Second))
		}
		return nil
	case "requeue-dead":
		n, err := db.RequeueDead(ctx, args[1:])
		if err != nil {
			return err
		}
		what := "all dead events"
		if len(args) > 1 {
			what = "dead events of orders " + strings.Join(args[1:], ", ")
		}
		fmt.Fprintf(stdout, "requeued %d (%s)\n", n, what)
		return nil
	}
	return fmt.Errorf("unknown outbox command %q (want status or requeue-dead)", args[0])
}
