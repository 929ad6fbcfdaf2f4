package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// tokenCommand is `shopd token issue|revoke|list`: buyer tokens for
// existing accounts (docs/security.md). issue prints the new token once;
// only its hash is stored.
func tokenCommand(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) != 2 || (args[0] != "issue" && args[0] != "revoke" && args[0] != "list") {
		return fmt.Errorf("token needs issue <email>, revoke <token-or-id> or list <email>")
	}
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := postgres.New(pool)
	switch args[0] {
	case "issue":
		t, err := db.IssueToken(ctx, args[1])
		if err != nil {
			return tokenErr(err)
		}
		fmt.Fprintf(stdout, "%s\n", t.Token)
		fmt.Fprintf(stdout, "# token %s for customer %s (%s): shown this once, only its hash is stored; send it as Authorization: Bearer <token>\n",
			t.ID, t.CustomerID, t.Email)
		return nil
	case "revoke":
		t, err := db.RevokeToken(ctx, args[1])
		if err != nil {
			return tokenErr(err)
		}
		fmt.Fprintf(stdout, "revoked token %s of %s at %s\n", t.ID, t.Email, t.RevokedAt.UTC().Format(time.RFC3339))
		return nil
	}
	list, err := db.ListTokens(ctx, args[1])
	if err != nil {
		return tokenErr(err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tLAST USED\tREVOKED")
	at := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, at(&t.CreatedAt), at(t.LastUsedAt), at(t.RevokedAt))
	}
	return tw.Flush()
}

// tokenErr is a store error as the command prints it.
func tokenErr(err error) error {
	if e := shop.AsError(err); e.Code != shop.EINTERNAL && e.Code != shop.EUNAVAILABLE {
		return fmt.Errorf("token: %s", e.Message)
	}
	return fmt.Errorf("token: %w", err)
}
