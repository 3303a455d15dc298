package engine_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
)

// loopEngines are the four ways of running a guest's own loops that
// docs/benchmarks.md compares ("instrumented guests"): wazero without
// interruption checks (the baseline), wazero checking the context at every
// loop iteration (how guests were stopped before instrumentation), and the
// instrumentation counting for deadlines only (GuestOff) and metering with
// canonical NaNs (GuestStrict).
var loopEngines = []struct {
	name string
	cfg  engine.Config
}{
	{"baseline", engine.Config{Uninterruptible: true}},
	{"closeondone", engine.WithCloseOnContextDone(engine.Config{Uninterruptible: true})},
	{"off", engine.Config{Guest: engine.GuestOff}},
	{"strict", engine.Config{Guest: engine.GuestStrict}},
}

func newEngine(b *testing.B, cfg engine.Config) *engine.Engine {
	b.Helper()
	e, err := engine.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// BenchmarkGuestLoops times Run of the loops guest: -reps naive 128x128 f64
// matrix products, reported in GFLOP/s, or -reps parses of 1 MiB of decimal
// integers, in MB/s. Either figure includes the guest's start (and, for
// parse, making up its input once), a few per cent of a run.
func BenchmarkGuestLoops(b *testing.B) {
	wasm := guesttest.Build(b, "github.com/accelnode/accelnode/engine/testdata/guests/loops")
	works := []struct {
		work string
		reps int
	}{{"matmul", 10}, {"parse", 20}}
	for _, w := range works {
		for _, le := range loopEngines {
			b.Run(w.work+"/"+le.name, func(b *testing.B) {
				e := newEngine(b, le.cfg)
				m := compile(b, e, wasm)
				inv := engine.Invocation{Args: []string{"-work", w.work, "-reps", strconv.Itoa(w.reps)}}
				if w.work == "parse" {
					b.SetBytes(int64(w.reps) << 20)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := e.Run(context.Background(), m, inv); err != nil {
						b.Fatal(err)
					}
				}
				if w.work == "matmul" {
					flop := 2.0 * 128 * 128 * 128 * float64(w.reps) * float64(b.N)
					b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				}
			})
		}
	}
}

// BenchmarkGuestLoopsInterleaved runs the same loops as BenchmarkGuestLoops,
// but each iteration is a round that runs every engine once, in turn, so
// that a shared machine's load falls on all four alike. It reports each
// engine's GFLOP/s or MB/s (MB of 10^6 bytes) over all rounds, and its
// speed relative to the baseline as the median of the rounds' ratios,
// which a burst of load on a neighbour moves least.
func BenchmarkGuestLoopsInterleaved(b *testing.B) {
	wasm := guesttest.Build(b, "github.com/accelnode/accelnode/engine/testdata/guests/loops")
	works := []struct {
		work string
		reps int
		unit string
		per  float64 // work per rep, in the unit's numerator
	}{{"matmul", 10, "GFLOP/s", 2 * 128 * 128 * 128 / 1e9}, {"parse", 20, "MB/s", (1 << 20) / 1e6}}
	for _, w := range works {
		b.Run(w.work, func(b *testing.B) {
			engines := make([]*engine.Engine, len(loopEngines))
			mods := make([]*engine.Module, len(loopEngines))
			for i, le := range loopEngines {
				engines[i] = newEngine(b, le.cfg)
				mods[i] = compile(b, engines[i], wasm)
			}
			inv := engine.Invocation{Args: []string{"-work", w.work, "-reps", strconv.Itoa(w.reps)}}
			spent := make([]time.Duration, len(loopEngines))
			ratios := make([][]float64, len(loopEngines))
			b.ResetTimer()
			for n := range b.N {
				round := make([]time.Duration, len(loopEngines))
				for k := range loopEngines {
					i := (n + k) % len(loopEngines)
					start := time.Now()
					if _, err := engines[i].Run(context.Background(), mods[i], inv); err != nil {
						b.Fatal(err)
					}
					round[i] = time.Since(start)
					spent[i] += round[i]
				}
				for i := range loopEngines {
					ratios[i] = append(ratios[i], round[0].Seconds()/round[i].Seconds())
				}
			}
			for i, le := range loopEngines {
				rate := w.per * float64(w.reps) * float64(b.N) / spent[i].Seconds()
				b.ReportMetric(rate, le.name+"-"+w.unit)
				if i > 0 {
					slices.Sort(ratios[i])
					b.ReportMetric(ratios[i][len(ratios[i])/2], le.name+"-x")
				}
			}
		})
	}
}

// BenchmarkDeadlineOvershoot runs the spin guest, which never calls the
// host, under GuestStrict with a Timeout, and reports how long after the
// timeout Run returned: the median and the largest over b.N runs.
func BenchmarkDeadlineOvershoot(b *testing.B) {
	wasm := guesttest.Build(b, "github.com/accelnode/accelnode/engine/testdata/guests/spin")
	for _, timeout := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		b.Run(timeout.String(), func(b *testing.B) {
			e := newEngine(b, engine.Config{Guest: engine.GuestStrict})
			m := compile(b, e, wasm)
			over := make([]float64, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				_, err := e.Run(context.Background(), m, engine.Invocation{Timeout: timeout})
				d := time.Since(start) - timeout
				if !errors.Is(err, engine.ErrDeadline) {
					b.Fatalf("err = %v, want ErrDeadline", err)
				}
				over = append(over, d.Seconds()*1e3)
			}
			slices.Sort(over)
			b.ReportMetric(over[len(over)/2], "median-over-ms")
			b.ReportMetric(over[len(over)-1], "max-over-ms")
		})
	}
}

// BenchmarkCompileLarge compiles bench/guest (about 5 MB) on a fresh engine
// each time, uninstrumented and under GuestStrict: first without a cache
// directory, then from a cache directory a first engine filled.
func BenchmarkCompileLarge(b *testing.B) {
	wasm := guesttest.Build(b, "github.com/accelnode/accelnode/bench/guest")
	b.Logf("guest: %d bytes", len(wasm))
	cfgs := []struct {
		name string
		cfg  engine.Config
	}{
		{"uninstrumented", engine.Config{Uninterruptible: true}},
		{"strict", engine.Config{Guest: engine.GuestStrict}},
	}
	ctx := context.Background()
	for _, cached := range []bool{false, true} {
		for _, c := range cfgs {
			name := "first/" + c.name
			cfg := c.cfg
			if cached {
				name = "cached/" + c.name
				cfg.CacheDir = b.TempDir()
				fill, err := engine.New(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				compile(b, fill, wasm)
				_ = fill.Close(ctx)
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(wasm)))
				for range b.N {
					b.StopTimer()
					e, err := engine.New(ctx, cfg)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					compile(b, e, wasm)
					b.StopTimer()
					_ = e.Close(ctx)
				}
			})
		}
	}
}
