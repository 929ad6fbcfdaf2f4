package postgres

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/service/shop"
)

// TestUsersSchemaRunDelivered proves that usersSchema.run never repeats a
// read that has passed results on, even when its error says the schema
// changed, and that the error keeps its usual mapping. (Retries after a
// real schema change: TestUsersSchemaSwitch.)
func TestUsersSchemaRunDelivered(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var s usersSchema
	s.mode.Store(int32(usersLegacy)) // known: run needs no pool until it would re-detect

	t.Run("NotRepeated", func(t *testing.T) {
		calls := 0
		gone := &pgconn.PgError{Code: "42P01"}
		err := s.run(ctx, nil, func(usersMode) error { calls++; return delivered(gone) })
		if calls != 1 || !errors.Is(err, gone) {
			t.Errorf("fn ran %d times, error %v; want once, the table error", calls, err)
		}
	})
	t.Run("MappedAsUsual", func(t *testing.T) {
		err := wrapErr(delivered(&pgconn.PgError{Code: "57014"}))
		if err.Code != shop.EUNAVAILABLE {
			t.Errorf("a statement timeout after lines went out maps to %s, want %s", err.Code, shop.EUNAVAILABLE)
		}
	})
	t.Run("OtherErrorsNotRepeated", func(t *testing.T) {
		calls := 0
		err := s.run(ctx, nil, func(usersMode) error { calls++; return &pgconn.PgError{Code: "23505"} })
		if calls != 1 || err == nil {
			t.Errorf("fn ran %d times, error %v; want once, the error", calls, err)
		}
	})
}
