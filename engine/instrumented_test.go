package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
)

const nansGuest = "github.com/accelnode/accelnode/engine/testdata/guests/nans"

// runNaNs runs the nans guest on an engine of the given guest determinism
// and returns its output lines by name.
func runNaNs(t *testing.T, cfg engine.Config) (map[string]string, engine.Result) {
	t.Helper()
	ctx := context.Background()
	e, err := engine.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	var out bytes.Buffer
	res, err := e.Run(ctx, compile(t, e, guesttest.Build(t, nansGuest)), engine.Invocation{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			lines[strings.TrimSpace(l[:i])] = l[i+1:]
		}
	}
	return lines, res
}

// Under GuestStrict every NaN an arithmetic instruction makes is the
// canonical one, while moves keep their bits; under GuestOff and
// uninstrumented, the CPU's own NaNs come through (on amd64, 0/0 is the
// negative default NaN). Instruction counts are the same run to run, and
// the same under strict and off: canonicalising is not charged.
func TestGuestDeterminismNaNs(t *testing.T) {
	strict, sres := runNaNs(t, engine.Config{})
	again, ares := runNaNs(t, engine.Config{Guest: engine.GuestStrict})
	off, ores := runNaNs(t, engine.Config{Guest: engine.GuestOff})
	plain, pres := runNaNs(t, engine.Config{Uninterruptible: true})

	canonical := map[string]string{
		"f64 0/0": "0x7ff8000000000000", "f32 0/0": "0x000000007fc00000",
		"f64 inf-inf": "0x7ff8000000000000", "f64 sqrt(-1)": "0x7ff8000000000000",
		"f64 payload+1": "0x7ff8000000000000", "f64 signaling+0": "0x7ff8000000000000",
		"f32->f64 payload": "0x7ff8000000000000", "f64 floor(payload)": "0x7ff8000000000000",
	}
	for name, want := range canonical {
		if strict[name] != want {
			t.Errorf("strict %s = %s, want %s", name, strict[name], want)
		}
	}
	kept := map[string]string{
		"f64 -payload (kept)": "0xfff8000000000123", "f64 abs(neg) (kept)": "0x7ff80000000abcde",
		"f64 copysign (kept)": "0xfff8000000000123",
	}
	for name, want := range kept {
		for mode, lines := range map[string]map[string]string{"strict": strict, "off": off, "plain": plain} {
			if lines[name] != want {
				t.Errorf("%s %s = %s, want the bits kept, %s", mode, name, lines[name], want)
			}
		}
	}
	if strict["sha256"] != again["sha256"] || sres.GuestUnits != ares.GuestUnits {
		t.Errorf("two strict runs: %s with %d guest units, %s with %d", strict["sha256"], sres.GuestUnits, again["sha256"], ares.GuestUnits)
	}
	if off["sha256"] != plain["sha256"] {
		t.Errorf("off gave %s, uninstrumented %s: off must leave NaNs alone", off["sha256"], plain["sha256"])
	}
	if off["f64 payload+1"] != "0x7ff8000000000123" {
		t.Errorf("off: payload+1 = %s, want the payload the CPU propagates", off["f64 payload+1"])
	}
	if sres.GuestUnits == 0 || sres.GuestUnits != ores.GuestUnits || pres.GuestUnits != 0 {
		t.Errorf("guest units: strict %d, off %d, uninstrumented %d", sres.GuestUnits, ores.GuestUnits, pres.GuestUnits)
	}
	// Strict charges them, off reports them only.
	if sres.UnitsUsed != sres.GuestUnits || ores.UnitsUsed != 0 {
		t.Errorf("units used: strict %d of %d guest, off %d", sres.UnitsUsed, sres.GuestUnits, ores.UnitsUsed)
	}
}

// A budget stops a guest spinning without host calls, at the same count
// every time, and the deadline stops it under either determinism.
func TestSpinStoppedByBudgetAndDeadline(t *testing.T) {
	ctx := context.Background()
	for _, g := range []engine.GuestDeterminism{engine.GuestStrict, engine.GuestOff} {
		e, err := engine.New(ctx, engine.Config{Guest: g})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(ctx)
		m := goGuest(t, e, "spin")
		start := time.Now()
		res, err := e.Run(ctx, m, engine.Invocation{Timeout: 100 * time.Millisecond})
		if !errors.Is(err, engine.ErrDeadline) {
			t.Fatalf("%s: %v, want the deadline", g, err)
		}
		if over := time.Since(start) - 100*time.Millisecond; over > time.Second {
			t.Errorf("%s: stopped %v after its deadline", g, over)
		}
		if res.GuestUnits < 1<<22 {
			t.Errorf("%s: spun %d guest units in 100 ms", g, res.GuestUnits)
		}
		if g != engine.GuestStrict {
			continue
		}
		const budget = 50_000_000
		var first engine.Result
		for i := range 2 {
			res, err := e.Run(ctx, m, engine.Invocation{Budget: budget})
			if !errors.Is(err, engine.ErrBudgetExhausted) {
				t.Fatalf("budget: %v", err)
			}
			// The guest stops at the first check past the budget: within
			// one loop iteration of it.
			if res.UnitsUsed <= budget || res.UnitsUsed > budget+1000 || res.UnitsUsed != res.GuestUnits {
				t.Errorf("stopped at %d units (%d the guest's), budget %d", res.UnitsUsed, res.GuestUnits, budget)
			}
			if i == 0 {
				first = res
			} else if res.UnitsUsed != first.UnitsUsed {
				t.Errorf("stopped at %d units, then at %d", first.UnitsUsed, res.UnitsUsed)
			}
		}
	}
}

// With a cache directory, instrumented binaries are kept there and a new
// engine reuses them; a damaged one is rewritten, not trusted.
func TestInstrumentedCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	wasm := guesttest.Build(t, nansGuest)
	run := func() string {
		e, err := engine.New(ctx, engine.Config{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(ctx)
		var out bytes.Buffer
		if _, err := e.Run(ctx, compile(t, e, wasm), engine.Invocation{Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	want := run()
	kept, _ := filepath.Glob(filepath.Join(dir, "instrumented", "*.wasm"))
	if len(kept) != 1 {
		t.Fatalf("kept %v", kept)
	}
	if got := run(); got != want {
		t.Errorf("from the kept binary: %q, want %q", got, want)
	}
	b, err := os.ReadFile(kept[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(kept[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != want {
		t.Errorf("after damage: %q, want %q", got, want)
	}
}

// A reactor's fuel global lives from call to call; each call's count
// starts afresh, so the same call costs the same.
func TestReactorCallsCountAlike(t *testing.T) {
	ctx := context.Background()
	m, err := shared.CompileReactor(ctx, guesttest.BuildReactor(t, "github.com/accelnode/accelnode/engine/testdata/guests/reactor"))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := shared.StartReactor(ctx, m, engine.ReactorConfig{}, nil, engine.CallLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	var units []uint64
	for range 3 {
		_, res, err := r.Call(ctx, "inc", engine.CallLimits{})
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, res.GuestUnits)
	}
	if units[0] == 0 || units[1] != units[2] {
		t.Errorf("guest units of three calls: %v", units)
	}
}
