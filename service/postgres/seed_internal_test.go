package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

// TestSeedIDs: the seed makes the same IDs on every run and in every
// version (1,485 of them, pinned by their digest), each a version 4 UUID.
func TestSeedIDs(t *testing.T) {
	t.Parallel()
	const want = "ea74c32b529d78632794dac0083cd7fcc97a03789d87d01364a066b9e2fd9dac"
	d := buildSeed()
	h := sha256.New()
	for _, ids := range [][]string{d.userID, d.prodID, d.orderID, d.itemID} {
		for _, id := range ids {
			_, _ = io.WriteString(h, id+"\n")
			if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
				t.Errorf("%q is not a version 4 UUID", id)
			}
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("seed IDs changed: digest %s, want %s (first user %s)", got, want, d.userID[0])
	}
}
