package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/service/shop"
)

// A checkout is one transaction of two round trips (a batchTx):
//
//  1. BEGIN, SET LOCAL lock_timeout and statement_timeout, claim the
//     idempotency key (if any), look up a finished checkout with that key,
//     and lock the cart's products that have enough stock, in id order;
//  2. decrement stock, insert the order and its lines, store the response
//     under the key, COMMIT.
//
// Between the two Go checks what was locked and builds the order (ids are
// made here, so that the response is known before the insert); the row
// locks are held for the second round trip only. When not every product
// could be locked, the second round trip instead reads the user and the
// products, to name what is unknown or short, and rolls back. Products are
// locked in one statement sorted by id, so two carts that share products
// queue for them instead of deadlocking; lock_timeout bounds that queue.

// claimKeySQL claims an idempotency key for this transaction, or takes
// over an expired one. While the claiming transaction is open, a second
// request with the key waits here (a lock wait, bounded by lock_timeout);
// when the first commits, the claim returns no row and the lookup below
// finds its result; when the first rolls back, the second claims the key.
const claimKeySQL = `-- name: checkout.claim_idempotency_key lock
INSERT INTO idempotency_keys AS k (idempotency_key, request_hash, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (idempotency_key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, order_id = NULL, response = NULL,
        created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= now()
RETURNING true`

// findKeySQL returns the finished checkout that holds the key. It runs
// after the claim, so it sees what a concurrent first request committed;
// our own fresh claim has no order yet and is not returned.
const findKeySQL = `-- name: checkout.find_idempotency_key
SELECT request_hash, response FROM idempotency_keys
WHERE idempotency_key = $1 AND order_id IS NOT NULL`

// lockProductsSQL locks, in id order, the cart's products that have
// enough stock for their line, and reads them with the transaction's
// timestamp (the order's createdAt) and whether the user exists. A product
// without enough stock is not locked at all: a sold-out product answers
// 409 at once instead of queueing behind its buyers. Postgres re-checks the
// stock of a row whose lock it waited for, so a product sold out meanwhile
// drops out too. When the idempotency key ($4) belongs to a finished
// checkout, it locks nothing: a replay never waits for stock.
const lockProductsSQL = `-- name: checkout.lock_products lock
SELECT ` + productCols + `, now(), EXISTS (SELECT 1 FROM {users} u WHERE u.id = $3)
FROM products p
JOIN unnest($1::uuid[], $2::int[]) AS r(id, qty) ON p.id = r.id
WHERE p.inventory >= r.qty
  AND ($4::text IS NULL OR NOT EXISTS (
      SELECT 1 FROM idempotency_keys k WHERE k.idempotency_key = $4 AND k.order_id IS NOT NULL))
ORDER BY p.id
FOR UPDATE OF p`

// readProductsSQL reads, without locking, the products of a cart that
// could not all be locked: to name the unknown ones and the short ones
// with their stock.
const readProductsSQL = `-- name: checkout.read_products
SELECT ` + productCols + ` FROM products p WHERE p.id = ANY($1::uuid[])`

const checkoutUserSQL = `-- name: checkout.user_exists
SELECT EXISTS (SELECT 1 FROM {users} u WHERE u.id = $1), now()`

// reserveStockSQL decrements stock only where enough is left; the CHECK
// (inventory >= 0) is the last line of defence behind it. COMMIT is already
// queued behind it, so a shortfall must fail in SQL, not in Go: when fewer
// rows than lines were decremented (impossible while they are locked), the
// cast of a text to int raises an error and the transaction aborts.
const reserveStockSQL = `-- name: checkout.reserve_stock
WITH r AS (
    UPDATE products p SET inventory = p.inventory - r.qty
    FROM unnest($1::uuid[], $2::int[]) AS r(id, qty)
    WHERE p.id = r.id AND p.inventory >= r.qty
    RETURNING 1
)
SELECT CASE WHEN count(*) = cardinality($1::uuid[]) THEN count(*)::int
            ELSE (` + "'" + reserveShortfall + "'" + ` || count(*) || ' of ' || cardinality($1::uuid[]))::int END
FROM r`

// reserveShortfall starts the error message of a reserve that fell short.
const reserveShortfall = "checkout reserved "

// insertOrderSQL inserts the order and its lines in one statement, at the
// prices read under lock.
const insertOrderSQL = `-- name: checkout.insert_order
WITH o AS (
    INSERT INTO orders (id, {buyer_id}, status, total, created_at)
    VALUES ($1, $2, 'pending', $3::bigint / 100.0, $4)
)
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT r.item_id, $1, r.id, r.qty, r.cents / 100.0
FROM unnest($5::uuid[], $6::uuid[], $7::int[], $8::bigint[]) AS r(item_id, id, qty, cents)`

const saveKeySQL = `-- name: checkout.save_idempotency_key
UPDATE idempotency_keys SET order_id = $2, response = $3 WHERE idempotency_key = $1`

// Checkout validates the cart, then in one transaction locks its products
// in id order, checks and decrements stock, and inserts the order and its
// lines at the database's prices. It never oversells. With an idempotency
// key, the key is claimed in the same transaction and stores the response,
// so a retry gets the same order (Replayed) and a concurrent duplicate
// waits for the first and then gets its order.
//
// Every wait is bounded: the connection acquire by CheckoutTimeouts.Acquire,
// lock waits by Lock (lock_timeout), each statement by Statement
// (statement_timeout). A CheckoutTrace in ctx receives the pool and lock
// waits; each step gets a span.
//
// Errors: EINVALID, ENOTFOUND (user or product), ECONFLICT (insufficient
// stock, with the shortages; a deadlock or serialization failure, with
// RetryAfter), EUNPROCESSABLE (the key was used for another request),
// EUNAVAILABLE (acquire, lock or statement timeout, with RetryAfter),
// EINTERNAL.
func (db *DB) Checkout(ctx context.Context, req shop.CheckoutRequest) (shop.CheckoutResult, error) {
	tr := shop.CheckoutTraceFrom(ctx)
	if tr == nil {
		tr = &shop.CheckoutTrace{}
	}
	req, err := req.Validate()
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	for _, l := range req.Items {
		tr.Lines++
		tr.Units += l.Quantity
	}

	ctx, finish := step(ctx, "checkout")
	checkout := db.checkout
	if db.on(ctx, shop.SwitchUnlockedStock) {
		checkout = db.checkoutUnlocked
	}
	var res shop.CheckoutResult
	err = db.users.run(ctx, db.Pool, func(m usersMode) error {
		var err error
		res, err = checkout(ctx, m, req, tr)
		return err
	})
	finish(err)
	if err != nil {
		return shop.CheckoutResult{}, wrapErr(err)
	}
	return res, nil
}

func (db *DB) checkout(ctx context.Context, m usersMode, req shop.CheckoutRequest, tr *shop.CheckoutTrace) (shop.CheckoutResult, error) {
	actx, done := step(ctx, "checkout.acquire")
	start := time.Now()
	conn, err := acquire(actx, db.Pool, db.CheckoutTimeouts.Acquire)
	tr.PoolWait = time.Since(start)
	done(err)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	defer conn.Release()

	c := &checkoutTx{req: req, ttl: db.IdempotencyTTL, trace: tr, tx: newBatchTx(conn.Conn(), db.CheckoutTimeouts),
		sql: func(q string) string { return db.q(m, q) }}
	defer c.tx.rollback(ctx)
	return c.run(ctx)
}

// checkoutTx is one checkout transaction's state.
type checkoutTx struct {
	req   shop.CheckoutRequest
	ttl   time.Duration
	trace *shop.CheckoutTrace
	tx    *batchTx
	// sql expands a statement for the users schema (usersschema.go).
	sql func(string) string
}

func (c *checkoutTx) run(ctx context.Context) (shop.CheckoutResult, error) {
	locked, err := c.lock(ctx)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	if locked.replay != nil {
		return *locked.replay, nil // the deferred rollback ends the read-only transaction
	}
	order, err := c.buildOrder(locked)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	if err := c.place(ctx, order); err != nil {
		return shop.CheckoutResult{}, err
	}
	return shop.CheckoutResult{Order: order}, nil
}

// lockResult is what round trip 1 found.
type lockResult struct {
	products []shop.Product // in line order
	now      time.Time
	replay   *shop.CheckoutResult
}

// lock opens the transaction, claims the key, finds a finished checkout
// with it, and locks the products (round trip 1).
func (c *checkoutTx) lock(ctx context.Context) (lockResult, error) {
	ctx, done := step(ctx, "checkout.lock")
	var res lockResult
	var err error
	defer func() { done(err) }()

	ids := make([]string, len(c.req.Items))
	qtys := make([]int32, len(c.req.Items))
	for i, l := range c.req.Items {
		ids[i], qtys[i] = l.ProductID, int32(l.Quantity)
	}
	key := c.req.IdempotencyKey
	var keyArg *string
	if key != "" {
		keyArg = &key
	}
	start := time.Now()
	err = c.tx.send(ctx, "", func(b *pgx.Batch) {
		if key != "" {
			b.Queue(claimKeySQL, key, c.req.Fingerprint(), c.ttl.Milliseconds())
			b.Queue(findKeySQL, key)
		}
		b.Queue(c.sql(lockProductsSQL), ids, qtys, c.req.UserID, keyArg)
	}, func(br pgx.BatchResults) error {
		var err error
		res, err = c.readLock(br, key)
		return err
	})
	c.trace.LockWait = time.Since(start)
	if err != nil || res.replay != nil {
		return res, err
	}
	if len(res.products) < len(ids) {
		// Some lines are short or unknown (or the user is): find out which.
		err = c.refuse(ctx, ids, res.products)
		return res, err
	}
	res.products = c.inLineOrder(res.products)
	return res, nil
}

// refuse explains why not every product could be locked, and rolls back
// (round trip 2): ENOTFOUND for an unknown user, then for unknown products
// (naming them), else ECONFLICT listing every short line with its stock
// (locked rows' stock as locked, the others' as just read).
func (c *checkoutTx) refuse(ctx context.Context, ids []string, locked []shop.Product) error {
	var exists bool
	var read []shop.Product
	err := c.tx.send(ctx, rollbackSQL, func(b *pgx.Batch) {
		b.Queue(c.sql(checkoutUserSQL), c.req.UserID)
		b.Queue(readProductsSQL, ids)
	}, func(br pgx.BatchResults) error {
		var now time.Time
		if err := br.QueryRow().Scan(&exists, &now); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		read, err = collectProducts(rows)
		return err
	})
	if err != nil {
		return err
	}
	if !exists {
		return shop.Errorf(shop.ENOTFOUND, "User not found")
	}
	byID := make(map[string]shop.Product, len(read))
	for _, p := range read {
		byID[p.ID] = p
	}
	for _, p := range locked {
		byID[p.ID] = p
	}
	var missing []string
	var short []shop.Shortage
	for _, l := range c.req.Items {
		p, ok := byID[l.ProductID]
		switch {
		case !ok:
			missing = append(missing, l.ProductID)
		case p.Inventory < l.Quantity:
			short = append(short, shop.Shortage{ProductID: p.ID, Name: p.Name, Requested: l.Quantity, Available: p.Inventory})
		}
	}
	if len(missing) > 0 {
		e := shop.Errorf(shop.ENOTFOUND, "Product not found: %s", strings.Join(missing, ", "))
		e.Extensions = map[string]any{"missingProductIds": missing}
		return e
	}
	if len(short) > 0 {
		return insufficientStock(short)
	}
	// Unreachable: a line neither locked, unknown nor short.
	return &shop.Error{Code: shop.ECONFLICT, RetryAfter: retryAfter,
		Message: "The stock changed during the checkout; retry it.", Err: fmt.Errorf("locked %d of %d products", len(locked), len(ids))}
}

func (c *checkoutTx) readLock(br pgx.BatchResults, key string) (lockResult, error) {
	var res lockResult
	if key != "" {
		var claimed bool
		err := br.QueryRow().Scan(&claimed)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return res, err
		}
		var hash, response []byte
		err = br.QueryRow().Scan(&hash, &response)
		switch {
		case err == nil:
			if !claimed {
				replay, err := c.replay(hash, response)
				res.replay = replay
				return res, err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return res, err
		case !claimed:
			// The claim saw a live key that the lookup cannot see: only
			// possible if its order was deleted meanwhile.
			return res, &shop.Error{Code: shop.ECONFLICT, RetryAfter: retryAfter,
				Message: "The Idempotency-Key is held by a concurrent request; retry shortly."}
		}
	}
	rows, err := br.Query()
	if err != nil {
		return res, err
	}
	defer rows.Close()
	var userExists bool
	for rows.Next() {
		var p shop.Product
		if err := scanProduct(rows, &p, &res.now, &userExists); err != nil {
			return res, err
		}
		res.products = append(res.products, p)
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	if len(res.products) > 0 && !userExists {
		return res, shop.Errorf(shop.ENOTFOUND, "User not found")
	}
	return res, nil
}

// replay returns the stored result of the key's first request, or
// EUNPROCESSABLE when that request was a different one.
func (c *checkoutTx) replay(hash, response []byte) (*shop.CheckoutResult, error) {
	if string(hash) != string(c.req.Fingerprint()) {
		return nil, &shop.Error{Code: shop.EUNPROCESSABLE,
			Message: "This Idempotency-Key was already used with a different request; use a new key for a new checkout."}
	}
	var o shop.Order
	if err := json.Unmarshal(response, &o); err != nil {
		return nil, shop.Internal(fmt.Errorf("stored idempotent response: %w", err))
	}
	return &shop.CheckoutResult{Order: o, Replayed: true}, nil
}

// inLineOrder returns the locked products (all of the cart's) in the
// order of the lines.
func (c *checkoutTx) inLineOrder(locked []shop.Product) []shop.Product {
	byID := make(map[string]shop.Product, len(locked))
	for _, p := range locked {
		byID[p.ID] = p
	}
	out := make([]shop.Product, len(c.req.Items))
	for i, l := range c.req.Items {
		out[i] = byID[l.ProductID]
	}
	return out
}

// buildOrder checks stock against the locked rows and builds the order at
// their prices, with new ids; or ECONFLICT listing every short line.
func (c *checkoutTx) buildOrder(l lockResult) (shop.Order, error) {
	var total shop.Money
	var short []shop.Shortage
	for i, line := range c.req.Items {
		p := l.products[i]
		if p.Inventory < line.Quantity {
			short = append(short, shop.Shortage{ProductID: p.ID, Name: p.Name, Requested: line.Quantity, Available: p.Inventory})
		}
		total += p.Price * shop.Money(line.Quantity)
	}
	if len(short) > 0 {
		return shop.Order{}, insufficientStock(short)
	}
	if total > shop.MaxMoney {
		return shop.Order{}, shop.Errorf(shop.EINVALID, "The order total is too large.")
	}
	o := shop.Order{ID: uuid.NewString(), UserID: c.req.UserID, Status: shop.OrderPending, Total: total,
		CreatedAt: l.now, Items: make([]shop.OrderItem, len(c.req.Items))}
	for i, line := range c.req.Items {
		p := l.products[i]
		p.Inventory -= line.Quantity
		o.Items[i] = shop.OrderItem{ID: uuid.NewString(), OrderID: o.ID, ProductID: p.ID, Quantity: line.Quantity, Price: p.Price, Product: p}
	}
	return o, nil
}

// place decrements stock, inserts the order, owes its confirmation mail
// (the outbox event), stores the response under the idempotency key and
// commits (round trip 2).
func (c *checkoutTx) place(ctx context.Context, o shop.Order) (err error) {
	ctx, done := step(ctx, "checkout.place")
	defer func() { done(err) }()
	n := len(o.Items)
	ids, itemIDs := make([]string, n), make([]string, n)
	qtys, cents := make([]int32, n), make([]int64, n)
	for i, it := range o.Items {
		ids[i], itemIDs[i], qtys[i], cents[i] = it.ProductID, it.ID, int32(it.Quantity), int64(it.Price)
	}
	key := c.req.IdempotencyKey
	var response []byte
	if key != "" {
		if response, err = json.Marshal(o); err != nil {
			return shop.Internal(err)
		}
	}
	mail, err := newConfirmation(ctx, o)
	if err != nil {
		return err
	}
	return c.tx.send(ctx, commitSQL, func(b *pgx.Batch) {
		b.Queue(reserveStockSQL, ids, qtys)
		b.Queue(c.sql(insertOrderSQL), o.ID, o.UserID, int64(o.Total), o.CreatedAt, itemIDs, ids, qtys, cents)
		mail.queue(b, c.sql)
		if key != "" {
			// JSON text, not []byte: exec mode would send bytes as bytea.
			b.Queue(saveKeySQL, key, o.ID, string(response))
		}
	}, func(br pgx.BatchResults) error {
		var reserved int
		if err := br.QueryRow().Scan(&reserved); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && strings.Contains(pgErr.Message, reserveShortfall) {
				return shop.Internal(fmt.Errorf("refused an order whose stock could not all be reserved: %w", err))
			}
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil { // the confirmation mail, owed
			return err
		}
		if key != "" {
			_, err = br.Exec()
		}
		return err
	})
}

func insufficientStock(short []shop.Shortage) *shop.Error {
	s := short[0]
	msg := fmt.Sprintf("Insufficient inventory for %s. Available: %d, Requested: %d", s.Name, s.Available, s.Requested)
	if len(short) > 1 {
		msg += fmt.Sprintf(" (and %d more lines)", len(short)-1)
	}
	return &shop.Error{Code: shop.ECONFLICT, Message: msg, Extensions: map[string]any{"shortages": short}}
}

// step starts the span of one checkout step (operation and resource name)
// and returns the function that finishes it, marking it failed with the
// error's code and client-safe message (never SQL or values).
func step(ctx context.Context, name string) (context.Context, func(error)) {
	span, ctx := tracer.StartSpanFromContext(ctx, name,
		tracer.ResourceName(name),
		tracer.Tag(ext.Component, "shoplab/postgres"))
	finished := false
	return ctx, func(err error) {
		if finished {
			return
		}
		finished = true
		if err == nil {
			span.Finish()
			return
		}
		e := wrapErr(err)
		span.SetTag("shop.error.code", string(e.Code))
		if e.Code == shop.ECONFLICT || e.Code == shop.ENOTFOUND || e.Code == shop.EINVALID || e.Code == shop.EUNPROCESSABLE {
			// An expected outcome, not a failure of the step.
			span.Finish()
			return
		}
		span.Finish(tracer.WithError(fmt.Errorf("%s: %s", e.Code, e.Message)), tracer.NoDebugStack())
	}
}

// overwriteStockSQL is the unlocked-stock switch's write: it sets the
// stock to what the checkout read minus its quantity, whatever the stock is
// now, as the original did. It returns the stock it overwrote: the WHERE
// clause notes it in a transaction-local setting, and Postgres re-evaluates
// that clause on the newest row version when the UPDATE had to wait for a
// concurrent one (Postgres 15 has no RETURNING OLD). The written value is
// never negative (the checkout checked read >= quantity), so the CHECK
// (inventory >= 0) never fires: the defect shows as lost updates instead.
const overwriteStockSQL = `-- name: checkout.overwrite_stock_unlocked
UPDATE products p SET inventory = $2::int - $3::int
WHERE p.id = $1
  AND set_config('shoplab.overwritten_stock', p.inventory::text, true) IS NOT NULL
RETURNING current_setting('shoplab.overwritten_stock')::int`

// checkoutUnlocked is the original's defect behind the unlocked-stock
// switch: it reads the user and the products without any lock (round trip
// 1, outside a transaction), checks stock in Go, then in one transaction
// writes back "stock read - quantity" per line, inserts the order and owes
// its mail (round trip 2). Between the read and the write, concurrent
// buyers read the same stock: each write overwrites the others' (a lost
// update) and more units are sold than there were. Each line whose write
// replaced another stock than it read counts in tr.StockOverwrites; each
// whose quantity exceeded the stock it overwrote (a decrement would have
// gone negative) in tr.NegativeStockAttempts. Idempotency keys are not
// honoured (the original had none). Errors: as Checkout.
func (db *DB) checkoutUnlocked(ctx context.Context, m usersMode, req shop.CheckoutRequest, tr *shop.CheckoutTrace) (shop.CheckoutResult, error) {
	actx, done := step(ctx, "checkout.acquire")
	start := time.Now()
	conn, err := acquire(actx, db.Pool, db.CheckoutTimeouts.Acquire)
	tr.PoolWait = time.Since(start)
	done(err)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	defer conn.Release()
	c := &checkoutTx{req: req, trace: tr, tx: newBatchTx(conn.Conn(), db.CheckoutTimeouts),
		sql: func(q string) string { return db.q(m, q) }}
	defer c.tx.rollback(ctx)

	ids := make([]string, len(req.Items))
	for i, l := range req.Items {
		ids[i] = l.ProductID
	}
	b := &pgx.Batch{}
	b.Queue(c.sql(checkoutUserSQL), req.UserID)
	b.Queue(readProductsSQL, ids)
	var exists bool
	var now time.Time
	var read []shop.Product
	br := conn.SendBatch(ctx, b)
	err = br.QueryRow().Scan(&exists, &now)
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			read, err = collectProducts(rows)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	if !exists {
		return shop.CheckoutResult{}, shop.Errorf(shop.ENOTFOUND, "User not found")
	}
	if len(read) < len(ids) {
		found := map[string]bool{}
		for _, p := range read {
			found[p.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		e := shop.Errorf(shop.ENOTFOUND, "Product not found: %s", strings.Join(missing, ", "))
		e.Extensions = map[string]any{"missingProductIds": missing}
		return shop.CheckoutResult{}, e
	}
	products := c.inLineOrder(read)
	order, err := c.buildOrder(lockResult{products: products, now: now}) // the check, on stock read without a lock
	if err != nil {
		return shop.CheckoutResult{}, err
	}

	mail, err := newConfirmation(ctx, order)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	err = c.tx.send(ctx, commitSQL, func(b *pgx.Batch) {
		for i, l := range req.Items {
			b.Queue(overwriteStockSQL, l.ProductID, products[i].Inventory, l.Quantity)
		}
		b.Queue(c.sql(insertOrderSQL), order.ID, order.UserID, int64(order.Total), order.CreatedAt,
			itemIDs(order), ids, quantities(order), unitCents(order))
		mail.queue(b, c.sql)
	}, func(br pgx.BatchResults) error {
		for i, l := range req.Items {
			var overwritten int
			if err := br.QueryRow().Scan(&overwritten); err != nil {
				return err
			}
			if overwritten != products[i].Inventory {
				tr.StockOverwrites++
			}
			if overwritten < l.Quantity {
				tr.NegativeStockAttempts++
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		_, err := br.Exec() // the confirmation mail, owed
		return err
	})
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	return shop.CheckoutResult{Order: order}, nil
}

func itemIDs(o shop.Order) []string {
	out := make([]string, len(o.Items))
	for i, it := range o.Items {
		out[i] = it.ID
	}
	return out
}

func quantities(o shop.Order) []int32 {
	out := make([]int32, len(o.Items))
	for i, it := range o.Items {
		out[i] = int32(it.Quantity)
	}
	return out
}

func unitCents(o shop.Order) []int64 {
	out := make([]int64, len(o.Items))
	for i, it := range o.Items {
		out[i] = int64(it.Price)
	}
	return out
}
