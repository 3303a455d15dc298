package cpupeak

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestDetect(t *testing.T) {
	c := Detect()
	if c.Model == "" {
		t.Error("Model is empty")
	}
	if c.LogicalCPUs < 1 {
		t.Errorf("LogicalCPUs = %d, want at least 1", c.LogicalCPUs)
	}
	if c.Features == nil {
		t.Error("Features is nil, want a list, empty or not")
	}
	// Each kernel needs these features and uses vectors this wide.
	tests := []struct {
		kernel string
		needs  []string
		bits   int
	}{
		{"avx512", []string{"avx512f"}, 512},
		{"avx2", []string{"avx2", "fma"}, 256},
		{"scalar", nil, 32},
	}
	found := false
	for _, tt := range tests {
		if c.FMAKernel != tt.kernel {
			continue
		}
		found = true
		for _, f := range tt.needs {
			if !slices.Contains(c.Features, f) {
				t.Errorf("FMAKernel = %q but Features %v lack %q", c.FMAKernel, c.Features, f)
			}
		}
		if c.VectorBits != tt.bits {
			t.Errorf("FMAKernel = %q with VectorBits = %d, want %d", c.FMAKernel, c.VectorBits, tt.bits)
		}
	}
	if !found {
		t.Errorf("FMAKernel = %q, not a known kernel", c.FMAKernel)
	}
	// Where there are vector kernels, the best one the features allow is
	// the one picked.
	for _, k := range allKernels() {
		if k.ok {
			if c.FMAKernel != k.name {
				t.Errorf("FMAKernel = %q, want %q, the best this machine runs", c.FMAKernel, k.name)
			}
			break
		}
	}
	if len(archKernels()) > 0 && c.Vendor == "" {
		t.Error("Vendor is empty, though CPUID is available")
	}
	t.Logf("%+v", c)
}

// fma32 is x*y + z rounded once to float32, as an FMA instruction computes
// it. big.Float holds the exact sum (a float32 product and sum need far
// fewer than 512 bits); Float32 then rounds it to nearest even.
func fma32(x, y, z float32) float32 {
	var p, s big.Float
	p.SetPrec(512).SetFloat64(float64(x))
	p.Mul(&p, new(big.Float).SetFloat64(float64(y)))
	s.SetPrec(512).Add(&p, new(big.Float).SetFloat64(float64(z)))
	f, _ := s.Float32()
	return f
}

func TestFMA32(t *testing.T) {
	// 1 + 2^-23 squared is 1 + 2^-22 + 2^-46: fused keeps the 2^-46 that
	// decides the rounding after subtracting 1 + 2^-22; unfused loses it.
	e := float32(math.Ldexp(1, -23))
	if got, want := fma32(1+e, 1+e, -(1+2*e)), float32(math.Ldexp(1, -46)); got != want {
		t.Errorf("fma32 = %g, want %g", got, want)
	}
}

// fmaCase is one run of a kernel: n iterations from a start derived from
// seed.
type fmaCase struct {
	name string
	n    int
	x, y float32
	seed float32
}

// vectorCases are for the assembly kernels, acc = x*y + acc. In "inexact",
// (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is half an ulp off any float32, so a
// multiply then an add, rounding twice, gets lanes wrong that a fused
// multiply-add gets right.
var vectorCases = []fmaCase{
	{"zero iterations", 0, 1.5, 2.5, 1},
	{"one iteration", 1, 1.5, 2.5, 1},
	{"inexact", 37, 1 + 1.0/4096, 1 + 1.0/4096, 0.01},
	{"negative", 53, -0.7, 1.3, -3},
	{"measuring operands", 200, 1.0 / 1024, 1.0 / 1024, 1},
}

// scalarCases are for the scalar kernel, acc = acc*x + y. Go may or may not
// fuse that, so x is a power of two: the product is then exact and both
// ways round the same.
var scalarCases = []fmaCase{
	{"zero iterations", 0, 0.5, 0.75, 1},
	{"one iteration", 1, 0.5, 0.75, 1},
	{"halving", 40, 0.5, 0.75, -7},
	{"negative", 23, -0.25, 1.1, 3},
	{"measuring operands", 200, scalarKernel.x, scalarKernel.y, 1},
}

// startAcc returns distinct normal starting values for every lane.
func startAcc(n int, seed float32) []float32 {
	acc := make([]float32, n)
	for i := range acc {
		acc[i] = seed * (1 + float32(i)/float32(n))
		if i%3 == 1 {
			acc[i] = -acc[i]
		}
	}
	return acc
}

// refRun is the Go reference for kernel k's recurrence.
func refRun(k kernel, acc []float32, n int, x, y float32) {
	for i := range acc {
		a := acc[i]
		for range n {
			if k.name == "scalar" {
				a = fma32(a, x, y)
			} else {
				a = fma32(x, y, a)
			}
		}
		acc[i] = a
	}
}

func TestKernels(t *testing.T) {
	for _, k := range allKernels() {
		t.Run(k.name, func(t *testing.T) {
			if !k.ok {
				t.Skipf("this machine lacks %s", k.need)
			}
			cases := vectorCases
			if k.name == "scalar" {
				cases = scalarCases
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					// Guard words either side catch stores out of bounds.
					const guard = 16
					size := k.accs * k.lanes
					buf := startAcc(size+2*guard, c.seed)
					want := slices.Clone(buf)
					refRun(k, want[guard:guard+size], c.n, c.x, c.y)
					k.run(buf[guard:guard+size], c.n, c.x, c.y)
					for i := range buf {
						if math.Float32bits(buf[i]) != math.Float32bits(want[i]) {
							t.Errorf("acc[%d] = %g, want %g", i-guard, buf[i], want[i])
						}
					}
				})
			}
		})
	}
}

// TestInexactCaseNeedsFusion checks that the "inexact" case tells a fused
// multiply-add from a multiply then an add, so that TestKernels would see a
// kernel that does not fuse.
func TestInexactCaseNeedsFusion(t *testing.T) {
	c := vectorCases[slices.IndexFunc(vectorCases, func(c fmaCase) bool { return c.name == "inexact" })]
	fused := startAcc(64, c.seed)
	unfused := slices.Clone(fused)
	refRun(kernel{name: "avx2"}, fused, c.n, c.x, c.y)
	for i := range unfused {
		for range c.n {
			unfused[i] += float32(c.x * c.y)
		}
	}
	if slices.Equal(fused, unfused) {
		t.Error("the inexact case gives the same result fused and unfused")
	}
}

func TestMeasureFP32(t *testing.T) {
	want := Detect().FMAKernel
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprint("threads=", threads), func(t *testing.T) {
			p, err := MeasureFP32(t.Context(), threads, 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if !(p.FLOPS > 0) || math.IsInf(p.FLOPS, 0) {
				t.Errorf("FLOPS = %g, want positive and finite", p.FLOPS)
			}
			if p.Threads != threads {
				t.Errorf("Threads = %d, want %d", p.Threads, threads)
			}
			if p.Kernel != want {
				t.Errorf("Kernel = %q, want %q", p.Kernel, want)
			}
			if !(p.Seconds > 0) {
				t.Errorf("Seconds = %g, want positive", p.Seconds)
			}
			t.Logf("%+v (%.1f GFLOP/s)", p, p.FLOPS/1e9)
		})
	}
}

func TestMeasureBandwidth(t *testing.T) {
	tests := []struct {
		threads int
		bytes   int64
	}{
		{1, 1 << 20},
		{2, 1 << 16},
		{1, 3}, // odd: one byte each way
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.threads, "x", tt.bytes), func(t *testing.T) {
			b, err := MeasureBandwidth(t.Context(), tt.threads, tt.bytes, 10*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if !(b.BytesPerSecond > 0) || math.IsInf(b.BytesPerSecond, 0) {
				t.Errorf("BytesPerSecond = %g, want positive and finite", b.BytesPerSecond)
			}
			if b.Threads != tt.threads {
				t.Errorf("Threads = %d, want %d", b.Threads, tt.threads)
			}
			if want := tt.bytes &^ 1; b.Bytes != want {
				t.Errorf("Bytes = %d, want %d", b.Bytes, want)
			}
			if !(b.Seconds > 0) {
				t.Errorf("Seconds = %g, want positive", b.Seconds)
			}
		})
	}
}

func TestBadArgs(t *testing.T) {
	tests := []struct {
		name    string
		threads int
		bytes   int64
		dur     time.Duration
	}{
		{"no threads", 0, 1 << 20, time.Millisecond},
		{"negative threads", -1, 1 << 20, time.Millisecond},
		{"no time", 1, 1 << 20, 0},
		{"negative time", 1, 1 << 20, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MeasureFP32(t.Context(), tt.threads, tt.dur); err == nil {
				t.Error("MeasureFP32: no error")
			}
			if _, err := MeasureBandwidth(t.Context(), tt.threads, tt.bytes, tt.dur); err == nil {
				t.Error("MeasureBandwidth: no error")
			}
		})
	}
	for _, bytes := range []int64{-1, 0, 1} {
		if _, err := MeasureBandwidth(t.Context(), 1, bytes, time.Millisecond); err == nil {
			t.Errorf("MeasureBandwidth with %d bytes: no error", bytes)
		}
	}
}

func TestCancel(t *testing.T) {
	measures := []struct {
		name    string
		measure func(ctx context.Context, dur time.Duration) error
	}{
		{"fp32", func(ctx context.Context, dur time.Duration) error {
			_, err := MeasureFP32(ctx, 1, dur)
			return err
		}},
		{"bandwidth", func(ctx context.Context, dur time.Duration) error {
			_, err := MeasureBandwidth(ctx, 1, 1<<16, dur)
			return err
		}},
	}
	for _, m := range measures {
		t.Run(m.name+"/before", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := m.measure(ctx, time.Millisecond); err != context.Canceled {
				t.Errorf("err = %v, want %v", err, context.Canceled)
			}
		})
		t.Run(m.name+"/during", func(t *testing.T) {
			// Far shorter than the measurement would take, so it ends
			// at the first check after the deadline.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			if err := m.measure(ctx, 5*time.Second); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want %v", err, context.DeadlineExceeded)
			}
		})
	}
}

// BenchmarkFMA reports the measured FP32 peak for one thread and for every
// logical CPU. Its ns/op is the measurement's own run time; the number to
// read is GFLOP/s.
func BenchmarkFMA(b *testing.B) {
	for _, threads := range slices.Compact([]int{1, runtime.NumCPU()}) {
		b.Run(fmt.Sprint("threads=", threads), func(b *testing.B) {
			var p Peak
			for b.Loop() {
				var err error
				if p, err = MeasureFP32(b.Context(), threads, 100*time.Millisecond); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(p.FLOPS/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkBandwidth reports the measured copy bandwidth, read plus
// written, with 64 MiB per thread.
func BenchmarkBandwidth(b *testing.B) {
	for _, threads := range slices.Compact([]int{1, runtime.NumCPU()}) {
		b.Run(fmt.Sprint("threads=", threads), func(b *testing.B) {
			var bw Bandwidth
			for b.Loop() {
				var err error
				if bw, err = MeasureBandwidth(b.Context(), threads, 64<<20, 100*time.Millisecond); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(bw.BytesPerSecond/1e9, "GB/s")
		})
	}
}
