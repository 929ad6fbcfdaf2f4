package relay

import "context"

// ClaimAndAbandon claims a batch the way r does and then does nothing with
// it, like a relay that dies right after its claim committed. It returns
// how many events it claimed.
func (r *Relay) ClaimAndAbandon(ctx context.Context) (int, error) {
	events, err := r.claim(ctx)
	return len(events), err
}
