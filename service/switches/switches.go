// Package switches serves shoplab's chaos switches (shop.SwitchNames)
// through the OpenFeature Go SDK. Flags come from a flagd-style JSON file
// (chaos/flags.json) into the SDK's in-memory provider, which can be flipped
// at runtime; a team running flagd (or any OpenFeature provider) can pass
// its provider to New instead. Each Set has its own isolated OpenFeature
// API, so nothing is global and sets can live side by side in tests.
// docs/switches.md describes the switches and their safety rules.
package switches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
	"github.com/open-feature/go-sdk/openfeature/memprovider"

	"github.com/shoplab/shoplab/service/shop"
)

// The variants of a switch in a flags file.
const (
	variantOn  = "on"
	variantOff = "off"
)

// File is a flags file: the subset of flagd's flag definitions that boolean
// switches need,
//
//	{"flags": {"n-plus-one": {"state": "ENABLED",
//	  "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}
//
// A flag whose state is DISABLED evaluates to off, as flagd does.
type File struct {
	Flags map[string]Flag `json:"flags"`
}

// Flag is one flag of a File.
type Flag struct {
	State          string          `json:"state"`
	Variants       map[string]bool `json:"variants"`
	DefaultVariant string          `json:"defaultVariant"`
}

// Off returns a File with every switch present and off.
func Off() File {
	f := File{Flags: map[string]Flag{}}
	for _, name := range shop.SwitchNames() {
		f.Flags[name] = flag(false)
	}
	return f
}

func flag(on bool) Flag {
	def := variantOff
	if on {
		def = variantOn
	}
	return Flag{State: string(memprovider.Enabled), Variants: map[string]bool{variantOn: true, variantOff: false}, DefaultVariant: def}
}

// ReadFile reads a flags file. Errors: a file that cannot be read or
// parsed, a flag that is not a switch (a typo would otherwise be a switch
// silently off), a state other than ENABLED or DISABLED, or a default
// variant it does not define.
func ReadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("switches: %w", err)
	}
	var f File // other members ($schema, targeting, metadata...) are ignored
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("switches: %s: %w", path, err)
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.Flags)) {
		fl := f.Flags[name]
		if !shop.KnownSwitch(name) {
			errs = append(errs, fmt.Errorf("unknown switch %q (known: %s)", name, strings.Join(shop.SwitchNames(), ", ")))
		}
		if fl.State != string(memprovider.Enabled) && fl.State != string(memprovider.Disabled) {
			errs = append(errs, fmt.Errorf("%s: state must be ENABLED or DISABLED", name))
		}
		if _, ok := fl.Variants[fl.DefaultVariant]; !ok {
			errs = append(errs, fmt.Errorf("%s: defaultVariant %q is not one of its variants", name, fl.DefaultVariant))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return File{}, fmt.Errorf("switches: %s: %w", path, err)
	}
	return f, nil
}

// With returns f with the named switches on (SWITCHES=a,b overrides the
// file). Errors: an unknown name.
func (f File) With(names ...string) (File, error) {
	out := File{Flags: maps.Clone(f.Flags)}
	if out.Flags == nil {
		out.Flags = map[string]Flag{}
	}
	for _, name := range names {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !shop.KnownSwitch(name) {
			return File{}, fmt.Errorf("switches: unknown switch %q (known: %s)", name, strings.Join(shop.SwitchNames(), ", "))
		}
		out.Flags[name] = flag(true)
	}
	return out, nil
}

func (f File) inMemory() map[string]memprovider.InMemoryFlag {
	m := make(map[string]memprovider.InMemoryFlag, len(f.Flags))
	for name, fl := range f.Flags {
		variants := make(map[string]any, len(fl.Variants))
		for k, v := range fl.Variants {
			variants[k] = v
		}
		m[name] = memprovider.InMemoryFlag{Key: name, State: memprovider.State(fl.State), DefaultVariant: fl.DefaultVariant, Variants: variants}
	}
	return m
}

// Set is shop.SwitchBoard on an OpenFeature client of its own API.
type Set struct {
	api    *openfeature.EvaluationAPI
	client *openfeature.Client

	mu   sync.Mutex
	mem  *memprovider.InMemoryProvider // nil when the provider came from outside
	file File                          // what mem serves
}

// NewInMemory returns a Set serving f through the SDK's in-memory
// provider; Flip changes it at runtime. Errors: the provider failed to
// start.
func NewInMemory(ctx context.Context, f File) (*Set, error) {
	mem := memprovider.NewInMemoryProvider(f.inMemory())
	s, err := New(ctx, mem)
	if err != nil {
		return nil, err
	}
	s.mem, s.file = mem, File{Flags: maps.Clone(f.Flags)}
	return s, nil
}

// New returns a Set evaluating the switches with provider (flagd's, for a
// team that runs flagd). Such a Set cannot be flipped from here. Errors:
// the provider failed to start.
func New(ctx context.Context, provider openfeature.FeatureProvider) (*Set, error) {
	api := isolated.NewAPI()
	if err := api.SetProviderAndWait(ctx, provider); err != nil {
		_ = api.Shutdown(ctx)
		return nil, fmt.Errorf("switches: provider %q: %w", provider.Metadata().Name, err)
	}
	return &Set{api: api, client: api.NewClient()}, nil
}

// On implements shop.Switches: the flag's value, false when it is
// missing, disabled or fails to evaluate.
func (s *Set) On(ctx context.Context, name string) bool {
	return s.client.Boolean(ctx, name, false, openfeature.EvaluationContext{})
}

// Active returns the switches that are on, in shop.SwitchNames order.
func (s *Set) Active(ctx context.Context) []string {
	var on []string
	for _, name := range shop.SwitchNames() {
		if s.On(ctx, name) {
			on = append(on, name)
		}
	}
	return on
}

// Flip implements shop.SwitchBoard: it replaces the in-memory provider's
// flag set with name turned on or off. Errors: ENOTFOUND (no such switch),
// EUNPROCESSABLE (the provider came from outside: flip it there).
func (s *Set) Flip(_ context.Context, name string, on bool) error {
	if !shop.KnownSwitch(name) {
		return shop.Errorf(shop.ENOTFOUND, "No such switch: %s (known: %s)", name, strings.Join(shop.SwitchNames(), ", "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return shop.Errorf(shop.EUNPROCESSABLE, "The switches come from an external provider; flip %s there.", name)
	}
	next := File{Flags: maps.Clone(s.file.Flags)}
	if next.Flags == nil {
		next.Flags = map[string]Flag{}
	}
	next.Flags[name] = flag(on)
	s.mem.UpdateFlags(next.inMemory())
	s.file = next
	return nil
}

// Close shuts the Set's OpenFeature API down.
func (s *Set) Close(ctx context.Context) error { return s.api.Shutdown(ctx) }
