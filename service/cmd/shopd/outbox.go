package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/telemetry"
)

// newRelay builds the outbox relay from the configuration: a relay on the
// postgres store, sending through the SMTP sender.
func newRelay(cfg config, db *postgres.DB, tel *telemetry.Telemetry) (*relay.Relay, error) {
	sender, err := mail.NewSender(cfg.Mail)
	if err != nil {
		return nil, err
	}
	return relay.New(db, sender, tel, cfg.Relay)
}

// outboxWork returns what `serve` runs for the outbox until its context
// ends: a relay when RELAY_ENABLED and SMTP_ADDR are set, otherwise only the
// outbox gauges (so that mails owed and not sent still show). A relay
// finishes the send in progress before it returns.
func outboxWork(cfg config, db *postgres.DB, tel *telemetry.Telemetry) (func(context.Context) error, error) {
	if cfg.RelayEnabled && cfg.Mail.Addr != "" {
		r, err := newRelay(cfg, db, tel)
		if err != nil {
			return nil, err
		}
		return r.Run, nil
	}
	if cfg.RelayEnabled {
		tel.Log.Warn("SMTP_ADDR is not set: order confirmations are kept in the outbox and not sent; set SMTP_ADDR (make run starts Mailpit) or run `shopd relay`")
	} else {
		tel.Log.Info("RELAY_ENABLED=false: this process sends no order confirmations; run `shopd relay`")
	}
	return func(ctx context.Context) error {
		tick := time.NewTicker(cfg.Relay.StatsInterval)
		defer tick.Stop()
		for {
			if _, err := relay.ReportStats(ctx, db, tel); err != nil && ctx.Err() == nil {
				tel.Log.Warn("outbox stats failed", zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}, nil
}

// relayCommand is `shopd relay`: an outbox relay on its own, until
// SIGTERM/SIGINT.
func relayCommand(ctx context.Context, cfg config, stdout io.Writer) error {
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
	// Both run until ctx ends; the pool closes after them.
	var g errgroup.Group
	g.Go(func() error { telemetry.ReportPoolStats(ctx, tel, "main", pool, cfg.DBStatsInterval); return nil })
	g.Go(func() error { return r.Run(ctx) })
	return g.Wait()
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
