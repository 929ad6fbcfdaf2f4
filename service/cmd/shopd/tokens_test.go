package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// TestTokenCommands drives `shopd token issue|list|revoke` against a
// served database with buyer authentication on (the default): the issued
// token reads its customer's orders, is listed without its secret, and is
// refused once revoked; an unknown email or argument is an error.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1",
		"DD_TRACE_ENABLED": "false", "DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": "1",
	}
	getenv := func(k string) string { return env[k] }
	ctx := t.Context()
	shopd := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(ctx, append([]string{"shopd"}, args...), getenv, &out, io.Discard)
		return out.String(), err
	}
	if _, err := shopd("setup"); err != nil {
		t.Fatalf("setup: %v", err)
	}
	out, err := shopd("token", "issue", " User1@Example.com ")
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	token := strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(token, "sbt_") || len(token) != 4+43 {
		t.Fatalf("issue printed %q", out)
	}
	var user string
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM buyer_tokens WHERE hash = sha256(convert_to($1, 'UTF8')) AND customer_id = $2`, token, user).Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("the token's hash is not stored for user1: %d %v", stored, err)
	}

	base, _, _ := startServe(t, getenv)
	get := func(bearer string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/orders/"+user+"?limit=1", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get(""); got != 401 {
		t.Errorf("no token: %d, want 401 (BUYER_AUTH is on by default)", got)
	}
	if got := get(token); got != 200 {
		t.Errorf("own token: %d, want 200", got)
	}

	out, err = shopd("token", "list", "user1@example.com")
	if err != nil || strings.Contains(out, token) || strings.Count(out, "\n") != 2 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) != 4 || f[2] == "-" || f[3] != "-" { // used, not revoked
		t.Errorf("list after use: %q", out)
	}

	if out, err := shopd("token", "revoke", id); err != nil || !strings.Contains(out, "revoked token "+id) {
		t.Fatalf("revoke by id: %v %q", err, out)
	}
	if got := get(token); got != 401 {
		t.Errorf("revoked token: %d, want 401", got)
	}
	if _, err := shopd("token", "revoke", token); err != nil { // by the token itself; again changes nothing
		t.Errorf("revoke by token: %v", err)
	}

	for _, args := range [][]string{
		{"token", "issue", "nobody@example.com"},
		{"token", "revoke", "not-a-token"},
		{"token", "revoke", "00000000-0000-4000-8000-000000000000"},
		{"token", "issue"},
		{"token", "rotate", "user1@example.com"},
	} {
		if _, err := shopd(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
