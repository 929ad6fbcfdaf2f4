package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// before is the database as the load found it.
type before struct {
	orders map[string]bool // the orders that existed
	stock  map[string]int64
}

func snapshot(ctx context.Context, e *Env) (*before, error) {
	c, err := pgx.Connect(ctx, e.DB.URL)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	b := &before{stock: map[string]int64{}, orders: map[string]bool{}}
	rows, err := c.Query(ctx, `SELECT id::text FROM orders`)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		b.orders[id] = true
	}
	rows, err = c.Query(ctx, `SELECT id::text, inventory FROM products`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		b.stock[id] = n
	}
	return b, rows.Err()
}

// Invariant is one invariant's verdict.
type Invariant struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// ExpectedToBreak: the scenario's fault must break it
	// (Expectations.ExpectedViolations).
	ExpectedToBreak bool `json:"expected_to_break,omitempty"`
}

func checkInvariants(ctx context.Context, e *Env, b *before, rec *recorder, names []string, mails int64) ([]Invariant, error) {
	c, err := pgx.Connect(ctx, e.DB.URL)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	// The run's orders are those the snapshot did not have, and their
	// lines the units they consumed.
	var orders []string
	consumed := map[string]int64{}
	rows, err := c.Query(ctx, `SELECT o.id::text, oi.product_id::text, oi.quantity::bigint
FROM orders o JOIN order_items oi ON oi.order_id = o.id`)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for rows.Next() {
		var id, product string
		var q int64
		if err := rows.Scan(&id, &product, &q); err != nil {
			return nil, err
		}
		if b.orders[id] {
			continue
		}
		if !seen[id] {
			seen[id] = true
			orders = append(orders, id)
		}
		consumed[product] += q
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []Invariant
	for _, name := range names {
		inv := Invariant{Name: name, OK: true}
		switch name {
		case InvStock:
			after := map[string]int64{}
			rows, err := c.Query(ctx, `SELECT id::text, inventory FROM products`)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var id string
				var n int64
				if err := rows.Scan(&id, &n); err != nil {
					return nil, err
				}
				after[id] = n
			}
			if err := rows.Err(); err != nil {
				return nil, err
			}
			var bad []string
			var units int64
			for id, was := range b.stock {
				now := after[id]
				units += consumed[id]
				if now < 0 || was-now != consumed[id] {
					bad = append(bad, fmt.Sprintf("product %s: %d -> %d, %d units in orders", id, was, now, consumed[id]))
				}
			}
			sort.Strings(bad)
			inv.OK = len(bad) == 0
			inv.Detail = fmt.Sprintf("%d products, %d units sold in %d orders, none below zero", len(b.stock), units, len(orders))
			if !inv.OK {
				inv.Detail = strings.Join(bad[:min(len(bad), 3)], "; ")
			}
		case InvOrderPer201:
			acked := rec.orders()
			var extra, missing []string
			for _, id := range orders {
				if !acked[id] {
					extra = append(extra, id)
				}
			}
			for id := range acked {
				if !slices.Contains(orders, id) {
					missing = append(missing, id)
				}
			}
			inv.OK = len(extra) == 0 && len(missing) == 0
			inv.Detail = fmt.Sprintf("%d orders, %d acknowledged by a 201", len(orders), len(acked))
			if !inv.OK {
				inv.Detail += fmt.Sprintf("; %d orders without a 201, %d 201s without an order", len(extra), len(missing))
			}
		case InvMailPerOrder:
			inv.OK = mails == int64(len(orders))
			inv.Detail = fmt.Sprintf("%d mails for %d orders", mails, len(orders))
			// Per order, by Message-ID (<order-confirmation.<id>@...>):
			// equal totals could hide a mail missing and another twice.
			perOrder := map[string]int{}
			for id, n := range e.Sink.MessageIDs() {
				if _, rest, ok := strings.Cut(id, "order-confirmation."); ok {
					perOrder[strings.SplitN(rest, "@", 2)[0]] += n
				}
			}
			if len(perOrder) > 0 {
				var none, twice int
				for _, id := range orders {
					switch n := perOrder[id]; {
					case n == 0:
						none++
					case n > 1:
						twice++
					}
				}
				inv.OK = inv.OK && none == 0 && twice == 0
				inv.Detail += fmt.Sprintf("; by Message-ID: %d orders without a mail, %d with more than one", none, twice)
			}
		}
		out = append(out, inv)
	}
	return out, nil
}
