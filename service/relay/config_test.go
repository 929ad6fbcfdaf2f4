package relay_test

import (
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/shop"
)

// TestConfigValidate checks that the defaults are valid and that each
// setting out of range is refused.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	def := relay.DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, f := range map[string]func(*relay.Config){
		"LeaseShorterThanSend": func(c *relay.Config) { c.Lease = c.SendTimeout },
		"NoBatch":              func(c *relay.Config) { c.BatchSize = 0 },
		"NoAttempts":           func(c *relay.Config) { c.MaxAttempts = 0 },
		"BackoffInverted":      func(c *relay.Config) { c.BackoffMax = c.BackoffBase / 2 },
	} {
		c := def
		f(&c)
		if err := c.Validate(); shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
}

// TestConfigBackoffDoublesWithJitter checks that the wait before retry n
// doubles from BackoffBase up to BackoffMax, each a random 50-100% of that.
func TestConfigBackoffDoublesWithJitter(t *testing.T) {
	t.Parallel()
	c := relay.Config{BackoffBase: time.Second, BackoffMax: time.Minute}
	for n, d := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 6: 32 * time.Second, 7: time.Minute, 100: time.Minute} {
		seen := map[time.Duration]bool{}
		for range 50 {
			b := c.Backoff(n)
			if b < d/2 || b > d {
				t.Errorf("Backoff(%d) = %v, want within [%v, %v]", n, b, d/2, d)
			}
			seen[b] = true
		}
		if len(seen) < 2 {
			t.Errorf("Backoff(%d) has no jitter", n)
		}
	}
}
