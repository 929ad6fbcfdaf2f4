package relay

import (
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/shoplab/shoplab/service/shop"
)

// Config tunes a Relay. DefaultConfig gives the production values.
type Config struct {
	// Name identifies the relay in outbox.claimed_by (default host:pid).
	Name string
	// BatchSize is how many due events one claim takes (RELAY_BATCH_SIZE).
	BatchSize int
	// Interval is the pause between polls once nothing is due (RELAY_INTERVAL).
	Interval time.Duration
	// Lease is how long a claim keeps other relays off an event
	// (RELAY_LEASE). It must exceed SendTimeout: a relay stops sending from
	// a batch once less than SendTimeout of its lease is left.
	Lease time.Duration
	// SendTimeout is the longest one send may take (the mailer's timeout,
	// SMTP_TIMEOUT).
	SendTimeout time.Duration
	// MaxAttempts is how many deliveries are tried before an event is parked
	// as dead (RELAY_MAX_ATTEMPTS).
	MaxAttempts int
	// BackoffBase and BackoffMax bound the wait before retry n:
	// min(BackoffBase * 2^(n-1), BackoffMax), of which a random half is
	// jitter (RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX).
	BackoffBase, BackoffMax time.Duration
	// StatsInterval is how often Run reports the outbox gauges.
	StatsInterval time.Duration
	// Retention is how long sent events are kept; 0 keeps them
	// (RELAY_RETENTION).
	Retention time.Duration
}

// DefaultConfig is the relay's production configuration: 20 events a
// claim, a poll a second, 2-minute leases, 30 s sends, 12 attempts with
// backoff from 10 s to 1 h (about three hours before an event goes dead),
// sent events kept a week.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Name:          host + ":" + strconv.Itoa(os.Getpid()),
		BatchSize:     20,
		Interval:      time.Second,
		Lease:         2 * time.Minute,
		SendTimeout:   30 * time.Second,
		MaxAttempts:   12,
		BackoffBase:   10 * time.Second,
		BackoffMax:    time.Hour,
		StatsInterval: 10 * time.Second,
		Retention:     7 * 24 * time.Hour,
	}
}

// Validate reports the first setting out of range. Errors: EINVALID.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 1000:
		return shop.Errorf(shop.EINVALID, "RELAY_BATCH_SIZE must be between 1 and 1000")
	case c.Interval <= 0:
		return shop.Errorf(shop.EINVALID, "RELAY_INTERVAL must be positive")
	case c.SendTimeout <= 0:
		return shop.Errorf(shop.EINVALID, "SMTP_TIMEOUT must be positive")
	case c.Lease <= c.SendTimeout:
		return shop.Errorf(shop.EINVALID, "RELAY_LEASE (%s) must be longer than SMTP_TIMEOUT (%s)", c.Lease, c.SendTimeout)
	case c.MaxAttempts < 1:
		return shop.Errorf(shop.EINVALID, "RELAY_MAX_ATTEMPTS must be at least 1")
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return shop.Errorf(shop.EINVALID, "RELAY_BACKOFF_BASE must be positive and at most RELAY_BACKOFF_MAX")
	case c.StatsInterval <= 0:
		return shop.Errorf(shop.EINVALID, "RELAY_STATS_INTERVAL must be positive")
	case c.Retention < 0:
		return shop.Errorf(shop.EINVALID, "RELAY_RETENTION must not be negative")
	}
	return nil
}

// Backoff is the wait before the retry that follows failed attempt n (1 is
// the first): d = min(BackoffBase * 2^(n-1), BackoffMax), then a uniformly
// random value in [d/2, d], so that events that failed together (a mail
// server outage) do not all come back in the same instant.
func (c Config) Backoff(n int) time.Duration {
	d := c.BackoffMax
	if n >= 1 && n <= 40 {
		if b := c.BackoffBase << (n - 1); b > 0 && b < d {
			d = b
		}
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}
