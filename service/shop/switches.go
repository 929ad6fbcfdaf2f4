package shop

import (
	"context"
	"slices"
)

// The chaos switches: each turns on one defect of the original system, for
// real, so that its incident can be reproduced and its monitor proven
// (docs/switches.md). All are off by default, and shopd refuses to start
// with any of them on in production.
const (
	// SwitchNPlusOne makes order history read the items of each order with
	// a statement of its own (1+N statements instead of 2).
	SwitchNPlusOne = "n-plus-one"
	// SwitchUnlockedStock makes checkout read stock, check it and write
	// "read - quantity" back without a row lock: concurrent buyers
	// overwrite each other's sales and oversell.
	SwitchUnlockedStock = "unlocked-stock"
	// SwitchRawErrors makes the HTTP edge answer every error that has an
	// internal cause (a driver error) with a 500 whose body holds the
	// cause's raw text.
	SwitchRawErrors = "raw-errors"
	// SwitchRowByRowImport makes the bulk import insert one product per
	// round trip instead of streaming them with COPY.
	SwitchRowByRowImport = "row-by-row-import"
	// SwitchReportInProcess makes a report load every line into memory and
	// build the whole text there before its first byte is sent.
	SwitchReportInProcess = "report-in-process"
)

// SwitchNames lists every switch, in a fixed order.
func SwitchNames() []string {
	return []string{SwitchNPlusOne, SwitchUnlockedStock, SwitchRawErrors, SwitchRowByRowImport, SwitchReportInProcess}
}

// KnownSwitch reports whether name is one of SwitchNames.
func KnownSwitch(name string) bool { return slices.Contains(SwitchNames(), name) }

// Switches says whether a chaos switch is on. Implementations must be safe
// for concurrent use; the stores and the edge ask per request, so a switch
// flipped at runtime takes effect with the next request.
type Switches interface {
	On(ctx context.Context, name string) bool
}

// SwitchBoard is Switches that can also be flipped at runtime (the chaos
// engine does, through /admin/switches).
type SwitchBoard interface {
	Switches
	// Flip turns the switch on or off. Errors: ENOTFOUND (no such switch),
	// EUNPROCESSABLE (the switches come from a provider that cannot be
	// flipped from here).
	Flip(ctx context.Context, name string, on bool) error
}

// NoSwitches has every switch off: the default, and production's.
type NoSwitches struct{}

// On implements Switches: always false.
func (NoSwitches) On(context.Context, string) bool { return false }

// SwitchOn reports whether s has the switch on; a nil s has all off.
func SwitchOn(ctx context.Context, s Switches, name string) bool {
	return s != nil && s.On(ctx, name)
}
