package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SeedStats counts the rows a seed run inserted (zero on a re-run).
type SeedStats struct {
	Users, Products, Orders, Items int64
}

// seedBase is the fixed clock of the seeded data, so every run is the same.
var seedBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var seedItems = []string{
	"Wireless Headphones", "USB-C Cable", "Standing Desk", "Office Chair", "Mechanical Keyboard",
	"Wireless Mouse", "Laptop Stand", "Webcam", "Desk Lamp", "Monitor Arm",
	"Water Bottle", "Coffee Mug", "Backpack", "Notebook", "Phone Charger",
	"Bluetooth Speaker", "Power Bank", "HDMI Cable", "Mouse Pad", "Travel Adapter",
}

// seedRow sets of the dataset, as column arrays for INSERT ... SELECT FROM
// unnest(...): one statement per table, not one per row.
type seedData struct {
	userID, userEmail, userName, userType []string
	userAt                                []time.Time
	prodID, prodName                      []string
	prodDesc                              []*string
	prodCents                             []int64
	prodInv                               []int32
	prodAt                                []time.Time
	orderID, orderUser, orderStatus       []string
	orderCents                            []int64
	orderAt                               []time.Time
	itemID, itemOrder, itemProduct        []string
	itemQty                               []int32
	itemCents                             []int64
}

// uuidFrom makes a random (version 4) UUID from the seeded generator, so
// that every seed run makes the same ones.
func uuidFrom(r *rand.Rand) string {
	id, _ := uuid.NewRandomFromReader(seedBytes{r}) // seedBytes never fails
	return id.String()
}

// seedBytes reads a seeded generator as bytes: each Read draws one Uint64
// per 8 bytes (or part of 8) of p, written big-endian.
type seedBytes struct{ r *rand.Rand }

func (s seedBytes) Read(p []byte) (int, error) {
	var b [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.BigEndian.PutUint64(b[:], s.r.Uint64())
		copy(p[i:], b[:])
	}
	return len(p), nil
}

// buildSeed makes the original's dataset (original-system.md) plus five
// merchants, from a fixed random seed.
func buildSeed() *seedData {
	r := rand.New(rand.NewPCG(42, 2026))
	d := &seedData{}
	addUser := func(email, name, typ string, at time.Time) string {
		id := uuidFrom(r)
		d.userID, d.userEmail, d.userName, d.userType, d.userAt = append(d.userID, id), append(d.userEmail, email), append(d.userName, name), append(d.userType, typ), append(d.userAt, at)
		return id
	}
	for i := 0; i < 100; i++ {
		d.prodID = append(d.prodID, uuidFrom(r))
		name := fmt.Sprintf("%s %d", seedItems[i%len(seedItems)], i/len(seedItems)+1)
		d.prodName = append(d.prodName, name)
		if i%5 == 4 { // 20% without a description, as in the original
			d.prodDesc = append(d.prodDesc, nil)
		} else {
			desc := fmt.Sprintf("A dependable %s for everyday use.", seedItems[i%len(seedItems)])
			d.prodDesc = append(d.prodDesc, &desc)
		}
		d.prodCents = append(d.prodCents, int64(5+r.IntN(495))*100+int64([]int{0, 49, 99}[r.IntN(3)]))
		if i < 10 { // the first ten are nearly sold out, for race tests
			d.prodInv = append(d.prodInv, int32(1+r.IntN(3)))
		} else {
			d.prodInv = append(d.prodInv, int32(10+r.IntN(100)))
		}
		d.prodAt = append(d.prodAt, seedBase.Add(time.Duration(i)*time.Second))
	}
	var customers []string
	for i := 1; i <= 30; i++ {
		customers = append(customers, addUser(fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i), "customer", seedBase))
	}
	for i := 1; i <= 5; i++ {
		addUser(fmt.Sprintf("merchant%d@example.com", i), fmt.Sprintf("Merchant %d", i), "merchant", seedBase)
	}
	heavy := addUser("heavy.user@example.com", "Heavy User", "customer", seedBase)

	statuses := []string{"pending", "completed", "cancelled"}
	addOrder := func(user, status string, minItems, maxItems int, at time.Time) {
		oid := uuidFrom(r)
		var total int64
		n := minItems + r.IntN(maxItems-minItems+1)
		picked := map[int]bool{}
		for len(picked) < n {
			picked[r.IntN(len(d.prodID))] = true
		}
		for p := range len(d.prodID) { // iterate in index order: deterministic
			if !picked[p] {
				continue
			}
			q := int32(1 + r.IntN(3))
			d.itemID, d.itemOrder, d.itemProduct = append(d.itemID, uuidFrom(r)), append(d.itemOrder, oid), append(d.itemProduct, d.prodID[p])
			d.itemQty, d.itemCents = append(d.itemQty, q), append(d.itemCents, d.prodCents[p])
			total += int64(q) * d.prodCents[p]
		}
		d.orderID, d.orderUser, d.orderStatus = append(d.orderID, oid), append(d.orderUser, user), append(d.orderStatus, status)
		d.orderCents, d.orderAt = append(d.orderCents, total), append(d.orderAt, at)
	}
	for i := 0; i < 200; i++ {
		addOrder(customers[r.IntN(len(customers))], statuses[r.IntN(3)], 1, 5, seedBase.Add(time.Duration(1000+i)*time.Minute))
	}
	for i := 0; i < 120; i++ {
		addOrder(heavy, "completed", 2, 5, seedBase.Add(time.Duration(2000+i)*time.Hour))
	}
	return d
}

const seedUsersSQL = `-- name: seed.users
INSERT INTO users (id, email, name, user_type, created_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT DO NOTHING`

// seedAccountsSQL is seed.users after the users split: merchants into
// merchants, everyone else into customers (the seed's merchants buy nothing).
const seedAccountsSQL = `-- name: seed.accounts
WITH s AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         AS s(id, email, name, user_type, created_at)
), m AS (
    INSERT INTO merchants (id, email, name, created_at)
    SELECT id, email, name, created_at FROM s WHERE user_type = 'merchant'
    ON CONFLICT DO NOTHING
    RETURNING 1
), c AS (
    INSERT INTO customers (id, email, name, created_at)
    SELECT id, email, name, created_at FROM s WHERE user_type IS DISTINCT FROM 'merchant'
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM c)`

const seedProductsSQL = `-- name: seed.products
INSERT INTO products (id, name, description, price, inventory, created_at)
SELECT id, name, description, cents / 100.0, inventory, created_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::timestamptz[])
     AS s(id, name, description, cents, inventory, created_at)
ON CONFLICT DO NOTHING`

const seedOrdersSQL = `-- name: seed.orders
INSERT INTO orders (id, {buyer_id}, status, total, created_at)
SELECT id, user_id, status, cents / 100.0, created_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::timestamptz[])
     AS s(id, user_id, status, cents, created_at)
ON CONFLICT DO NOTHING`

const seedItemsSQL = `-- name: seed.order_items
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT id, order_id, product_id, quantity, cents / 100.0
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::bigint[])
     AS s(id, order_id, product_id, quantity, cents)
ON CONFLICT DO NOTHING`

// Seed inserts the demo dataset in one transaction with one statement per
// table. Ids come from a fixed random seed, so a re-run inserts nothing and
// every run yields the same data. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) Seed(ctx context.Context) (SeedStats, error) {
	d := buildSeed()
	var st SeedStats
	err := db.users.run(ctx, db.Pool, func(m usersMode) error {
		st = SeedStats{}
		return inTx(ctx, db.Pool, nil, func(tx pgx.Tx) error {
			if m == usersContracted {
				if err := tx.QueryRow(ctx, seedAccountsSQL, d.userID, d.userEmail, d.userName, d.userType, d.userAt).Scan(&st.Users); err != nil {
					return err
				}
			} else {
				tag, err := tx.Exec(ctx, seedUsersSQL, d.userID, d.userEmail, d.userName, d.userType, d.userAt)
				if err != nil {
					return err
				}
				st.Users = tag.RowsAffected()
			}
			steps := []struct {
				n    *int64
				sql  string
				args []any
			}{
				{&st.Products, seedProductsSQL, []any{d.prodID, d.prodName, d.prodDesc, d.prodCents, d.prodInv, d.prodAt}},
				{&st.Orders, db.q(m, seedOrdersSQL), []any{d.orderID, d.orderUser, d.orderStatus, d.orderCents, d.orderAt}},
				{&st.Items, seedItemsSQL, []any{d.itemID, d.itemOrder, d.itemProduct, d.itemQty, d.itemCents}},
			}
			for _, s := range steps {
				tag, err := tx.Exec(ctx, s.sql, s.args...)
				if err != nil {
					return err
				}
				*s.n = tag.RowsAffected()
			}
			return nil
		})
	})
	if err != nil {
		return st, wrapErr(err)
	}
	return st, nil
}
