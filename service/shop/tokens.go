package shop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

// BuyerTokenPrefix starts every buyer token, so that secret scanners and
// people recognise one in a log or a paste.
const BuyerTokenPrefix = "sbt_"

// TokenHash is the SHA-256 of a buyer token: all that is stored of it.
//
// A fast hash, not bcrypt or argon2: those slow down guessing of
// low-entropy secrets (passwords); a token carries 256 random bits, which
// no number of guesses reaches, so slowness would buy nothing but CPU on
// every request. And an unsalted digest can be looked up by a unique
// index, where a salted one would have to be compared with every row.
type TokenHash [sha256.Size]byte

// HashBuyerToken returns the hash under which token is stored.
func HashBuyerToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// NewBuyerToken returns a new random buyer token (BuyerTokenPrefix and 256
// random bits, base64url) and its hash.
func NewBuyerToken() (string, TokenHash) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	token := BuyerTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashBuyerToken(token)
}

// LooksLikeBuyerToken reports whether s has a buyer token's prefix.
func LooksLikeBuyerToken(s string) bool { return strings.HasPrefix(s, BuyerTokenPrefix) }

// BuyerToken is one issued token, as `shopd token list` shows it: never
// the token itself, which is shown once when issued (IssuedToken).
type BuyerToken struct {
	ID         string     `json:"id"`
	CustomerID string     `json:"customerId"`
	Email      string     `json:"email"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// IssuedToken is a token just issued: Token is the secret, shown this
// once.
type IssuedToken struct {
	BuyerToken
	Token string `json:"token"`
}

// TokenStore authenticates buyers.
type TokenStore interface {
	// BuyerByToken returns the id of the customer whose token hashes to h,
	// unless that token was revoked; it notes when the token was last
	// used (to the minute). Errors: EUNAUTHORIZED (no such token, or
	// revoked), EUNAVAILABLE, EINTERNAL.
	BuyerByToken(ctx context.Context, h TokenHash) (customerID string, err error)
}
