package strictcpu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// specSession returns a strict session on the contract's literal
// transcription (accel/conformance).
func specSession(tb testing.TB) *accel.Session {
	tb.Helper()
	s, err := accel.NewSession(conformance.Spec(), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// convPads is a convolution of stride 1 and dilation dil with the given
// padding (top, left, bottom, right) and groups.
func convPads(dh, dw, pt, pl, pb, pr, groups int) accel.Conv2DParams {
	return accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: pt, PadLeft: pl, PadBottom: pb, PadRight: pr,
		DilationH: dh, DilationW: dw, Groups: groups}
}

// bdCases are backward data shapes (forward input xs, weights ws) that
// reach every path: the padded taps (with and without padding to copy,
// in bands, in ranges of input channels, in chunks of output channels and
// in segments of a long row) and the contract's loop (strides, padding
// beyond the window, rows too long for the padded blocks).
var bdCases = []struct {
	xs, ws []int
	p      accel.Conv2DParams
}{
	{[]int{2, 16, 14, 14}, []int{32, 16, 5, 5}, convParams(1, 2, 1, 1)}, // MNIST's second layer
	{[]int{3, 1, 28, 28}, []int{16, 1, 5, 5}, convParams(1, 2, 1, 1)},   // and its first
	{[]int{2, 3, 6, 7}, []int{4, 3, 3, 3}, convParams(1, 2, 1, 1)},      // full padding: nothing to copy
	{[]int{2, 3, 6, 7}, []int{4, 3, 3, 3}, convParams(1, 0, 1, 1)},
	{[]int{2, 5, 4, 4}, []int{7, 5, 1, 1}, convParams(1, 0, 1, 1)},
	{[]int{1, 2, 10, 11}, []int{3, 2, 3, 2}, convPads(2, 3, 1, 2, 4, 0, 1)},
	{[]int{2, 6, 7, 5}, []int{9, 2, 3, 3}, convParams(1, 1, 1, 3)},
	{[]int{1, 4, 9, 9}, []int{4, 1, 5, 5}, convParams(1, 2, 1, 4)},
	{[]int{1, 2, 3, 2}, []int{2, 2, 3, 5}, convPads(1, 1, 0, 2, 0, 1, 1)},             // kernel wider than the input
	{[]int{1, 4, 40, 40}, []int{128, 4, 3, 3}, convParams(1, 1, 1, 1)},                // chunks of output channels
	{[]int{1, 64, 30, 30}, []int{8, 64, 3, 3}, convParams(1, 1, 1, 1)},                // ranges of input channels
	{[]int{1, 1, 300, 200}, []int{16, 1, 3, 3}, convParams(1, 1, 1, 1)},               // bands of rows
	{[]int{1, 1, 1, 3000}, []int{2, 1, 1, 1500}, convPads(1, 1, 0, 1499, 0, 1499, 1)}, // segments of a row
	{[]int{2, 3, 9, 8}, []int{4, 3, 3, 3}, convParams(2, 1, 1, 1)},
	{[]int{1, 3, 10, 7}, []int{3, 1, 5, 2}, accel.Conv2DParams{StrideH: 1, StrideW: 3, PadTop: 4, PadLeft: 1, PadBottom: 3, PadRight: 2, DilationH: 2, DilationW: 3, Groups: 3}},
	{[]int{1, 2, 8, 9}, []int{2, 2, 3, 2}, accel.Conv2DParams{StrideH: 2, StrideW: 3, DilationH: 1, DilationW: 1, Groups: 1}}, // rows in no window
	{[]int{1, 2, 4, 4}, []int{3, 2, 2, 2}, convPads(1, 1, 3, 0, 0, 1, 1)},                                                     // padding beyond the window
	{[]int{2, 3, 7, 8}, []int{2, 3, 1, 1}, convParams(3, 0, 1, 1)},                                                            // phases that no kernel position reaches
	{[]int{1, 2, 13, 14}, []int{3, 2, 3, 4}, accel.Conv2DParams{StrideH: 2, StrideW: 3, PadTop: 2, PadLeft: 1, PadBottom: 1, PadRight: 3, DilationH: 2, DilationW: 2, Groups: 1}},
	{[]int{1, 4, 20, 21}, []int{2, 2, 4, 5}, accel.Conv2DParams{StrideH: 6, StrideW: 4, PadTop: 5, PadLeft: 3, PadBottom: 6, PadRight: 2, DilationH: 4, DilationW: 3, Groups: 2}},
	{[]int{2, 4, 57, 57}, []int{6, 4, 3, 3}, convParams(2, 1, 1, 1)},                                                                                   // phases read in place and padded
	{[]int{1, 1, 2, 5}, []int{2, 1, 3, 2}, accel.Conv2DParams{StrideH: 3, StrideW: 1, PadTop: 2, PadBottom: 1, DilationH: 1, DilationW: 1, Groups: 1}}, // a stride beyond the input
	{[]int{1, 1, 30, 30}, []int{1, 1, 2, 2}, convParams(9, 0, 1, 1)},                                                                                   // too many phases
	{[]int{1, 1, 2, 40000}, []int{1, 1, 1, 3}, convPads(1, 1, 0, 1, 0, 1, 1)},                                                                          // rows too long
}

// bdInputs draws the output gradient and the weights of a backward data
// case: kind "specials-dy" puts special values into the gradient alone,
// which keeps the padded taps' path.
func bdInputs(r *rand.Rand, kind string, nDy, nW int) (dy, w []float32) {
	if kind == "specials-dy" {
		return values(r, nDy, "specials"), randF32(r, nW)
	}
	return values(r, nDy, kind), values(r, nW, kind)
}

// TestConv2DBackwardDataLevels checks every level, on one thread and on
// several, against the contract's transcription.
func TestConv2DBackwardDataLevels(t *testing.T) {
	spec := specSession(t)
	forEachLevel(t, func(t *testing.T, k *kernels) {
		r := newRand(41)
		for i, c := range bdCases {
			ys, err := accel.Conv2DShape(c.xs, c.ws, nil, c.p)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			p := accel.Conv2DBackwardDataParams{Conv2DParams: c.p, InputH: c.xs[2], InputW: c.xs[3]}
			for _, kind := range append(shortKinds(), "specials-dy") {
				dy, w := bdInputs(r, kind, product(ys), product(c.ws))
				want := bdRun(t, spec, dy, w, ys, c.ws, p)
				for _, threads := range shortThreads() {
					if got := bdRun(t, newSessionKernels(t, threads, k), dy, w, ys, c.ws, p); !sameBits(got, want) {
						t.Errorf("case %d %v %v %+v %s, %d threads: differs from the contract: %s", i, c.xs, c.ws, c.p, kind, threads, firstDiff(got, want))
					}
				}
			}
		}
	})
}

func bdRun(t *testing.T, s *accel.Session, dy, w []float32, ys, ws []int, p accel.Conv2DBackwardDataParams) []float32 {
	t.Helper()
	in := []*accel.Tensor{tensorF32(t, s, ys, dy), tensorF32(t, s, ws, w)}
	out, err := s.Conv2DBackwardData(bg, in[0], in[1], p)
	if err != nil {
		t.Fatalf("conv2d_backward_data %v %v %+v: %v", ys, ws, p, err)
	}
	return readFree(t, s, out, in...)
}

// TestConv2DBackwardDataIsForward checks the claim the fast path rests on,
// against the contract's transcription on random shapes: with strides of 1
// and padding within the dilated window, the gradient of the input is
// conv2d of the gradient with the weights flipped in KH and KW and their
// channel axes swapped, padded by DH*(KH-1)-PT on top and so on, bit for
// bit, whatever the values.
func TestConv2DBackwardDataIsForward(t *testing.T) {
	spec, s := specSession(t), newSession(t, 2)
	r := newRand(42)
	cases := 200
	if testing.Short() {
		cases = 40
	}
	for i := range cases {
		g := 1 + r.IntN(3)
		n, cg, ocg := 1+r.IntN(2), 1+r.IntN(3), 1+r.IntN(3)
		kh, kw, dh, dw := 1+r.IntN(4), 1+r.IntN(4), 1+r.IntN(3), 1+r.IntN(3)
		spanH, spanW := dh*(kh-1), dw*(kw-1)
		pt, pb, pl, pr := r.IntN(spanH+1), r.IntN(spanH+1), r.IntN(spanW+1), r.IntN(spanW+1)
		h := max(1, spanH+1-pt-pb) + r.IntN(6)
		wd := max(1, spanW+1-pl-pr) + r.IntN(6)
		xs, ws := []int{n, g * cg, h, wd}, []int{g * ocg, cg, kh, kw}
		p := convPads(dh, dw, pt, pl, pb, pr, g)
		ys, err := accel.Conv2DShape(xs, ws, nil, p)
		if err != nil {
			t.Fatalf("case %d %v %v %+v: %v", i, xs, ws, p, err)
		}
		kind := []string{"uniform", "specials", "tiny", "huge"}[i%4]
		dy, w := values(r, product(ys), kind), values(r, product(ws), kind)
		want := bdRun(t, spec, dy, w, ys, ws, accel.Conv2DBackwardDataParams{Conv2DParams: p, InputH: h, InputW: wd})

		// The forward convolution: turned[c, o, kh', kw'] = w[g*OCG+o,
		// c-g*CG, KH-1-kh', KW-1-kw'].
		turned := make([]float32, len(w))
		for oc := range g * ocg {
			for ci := range cg {
				for a := range kh {
					for b := range kw {
						c := oc/ocg*cg + ci
						turned[((c*ocg+oc%ocg)*kh+kh-1-a)*kw+kw-1-b] = w[((oc*cg+ci)*kh+a)*kw+b]
					}
				}
			}
		}
		fp := convPads(dh, dw, spanH-pt, spanW-pl, spanH-pb, spanW-pr, g)
		out, err := s.Conv2D(bg, tensorF32(t, s, ys, dy), tensorF32(t, s, []int{g * cg, ocg, kh, kw}, turned), nil, fp)
		if err != nil {
			t.Fatalf("case %d: conv2d: %v", i, err)
		}
		if got := readF32(t, s, out); !sameBits(got, want) {
			t.Errorf("case %d %v %v %+v %s: conv2d of the gradient differs from the contract: %s", i, xs, ws, p, kind, firstDiff(got, want))
		}
	}
}

// TestConvBackwardRandom checks both kernels against the contract's
// transcription on random convolutions: strides, dilations, padding up to
// beyond the window, groups, and values of every kind.
func TestConvBackwardRandom(t *testing.T) {
	spec, s := specSession(t), newSession(t, 3)
	r := newRand(48)
	cases := 300
	if testing.Short() {
		cases = 60
	}
	for i := range cases {
		g := 1 + r.IntN(3)
		n, cg, ocg := 1+r.IntN(3), 1+r.IntN(3), 1+r.IntN(4)
		kh, kw := 1+r.IntN(4), 1+r.IntN(4)
		p := accel.Conv2DParams{StrideH: 1 + r.IntN(4), StrideW: 1 + r.IntN(4), DilationH: 1 + r.IntN(3), DilationW: 1 + r.IntN(3),
			PadTop: r.IntN(5), PadLeft: r.IntN(5), PadBottom: r.IntN(5), PadRight: r.IntN(5), Groups: g}
		h := max(1, p.DilationH*(kh-1)+1-p.PadTop-p.PadBottom) + r.IntN(9)
		wd := max(1, p.DilationW*(kw-1)+1-p.PadLeft-p.PadRight) + r.IntN(9)
		xs, ws := []int{n, g * cg, h, wd}, []int{g * ocg, cg, kh, kw}
		ys, err := accel.Conv2DShape(xs, ws, nil, p)
		if err != nil {
			t.Fatalf("case %d %v %v %+v: %v", i, xs, ws, p, err)
		}
		kind := []string{"uniform", "specials", "specials-dy", "tiny", "huge"}[i%5]
		dy, w := bdInputs(r, kind, product(ys), product(ws))
		pd := accel.Conv2DBackwardDataParams{Conv2DParams: p, InputH: h, InputW: wd}
		if got, want := bdRun(t, s, dy, w, ys, ws, pd), bdRun(t, spec, dy, w, ys, ws, pd); !sameBits(got, want) {
			t.Errorf("case %d %v %v %+v %s: conv2d_backward_data differs from the contract: %s", i, xs, ws, p, kind, firstDiff(got, want))
		}
		_, x := bdInputs(r, kind, 0, product(xs))
		pf := accel.Conv2DBackwardFilterParams{Conv2DParams: p, KernelH: kh, KernelW: kw}
		if got, want := bfRun(t, s, x, dy, xs, ys, pf), bfRun(t, spec, x, dy, xs, ys, pf); !sameBits(got, want) {
			t.Errorf("case %d %v %v %+v %s: conv2d_backward_filter differs from the contract: %s", i, xs, ws, p, kind, firstDiff(got, want))
		}
	}
}

// bfCases are backward filter shapes (forward input xs, weights ws): runs
// of the blocksum that do and do not fill 256 terms and that cross images,
// an odd number of runs, tiles of output channels and of weights, strides,
// dilations, groups and windows in padding.
var bfCases = []struct {
	xs, ws []int
	p      accel.Conv2DParams
}{
	{[]int{2, 16, 14, 14}, []int{32, 16, 5, 5}, convParams(1, 2, 1, 1)}, // MNIST's second layer: 392 terms
	{[]int{6, 1, 28, 28}, []int{16, 1, 5, 5}, convParams(1, 2, 1, 1)},   // and its first: 4,704 terms, 19 runs
	{[]int{1, 1, 1, 1}, []int{1, 1, 1, 1}, convParams(1, 0, 1, 1)},
	{[]int{5, 2, 3, 17}, []int{3, 2, 1, 1}, convParams(1, 0, 1, 1)}, // 255 terms
	{[]int{4, 2, 8, 8}, []int{3, 2, 3, 3}, convParams(1, 1, 1, 1)},  // 256
	{[]int{1, 1, 257, 1}, []int{2, 1, 1, 1}, convParams(1, 0, 1, 1)},
	{[]int{27, 2, 3, 5}, []int{2, 2, 2, 2}, convPads(1, 1, 0, 1, 1, 1, 1)}, // 513
	{[]int{3, 2, 9, 11}, []int{3, 2, 3, 3}, accel.Conv2DParams{StrideH: 2, StrideW: 3, DilationH: 1, DilationW: 1, Groups: 1}},
	{[]int{9, 2, 8, 7}, []int{3, 2, 3, 3}, convParams(2, 1, 1, 1)},
	{[]int{5, 3, 11, 12}, []int{4, 3, 2, 3}, accel.Conv2DParams{StrideH: 3, StrideW: 2, DilationH: 4, DilationW: 2, PadTop: 3, PadLeft: 2, PadBottom: 1, Groups: 1}},
	{[]int{9, 9, 5, 7}, []int{6, 3, 2, 3}, accel.Conv2DParams{StrideH: 1, StrideW: 2, DilationH: 1, DilationW: 1, Groups: 3}},
	{[]int{6, 5, 7, 7}, []int{5, 1, 3, 3}, convParams(1, 1, 1, 5)},
	{[]int{3, 2, 3, 3}, []int{3, 2, 2, 2}, convPads(1, 1, 3, 0, 0, 4, 1)},     // windows in padding
	{[]int{2, 32, 6, 6}, []int{100, 32, 3, 3}, convParams(1, 1, 1, 1)},        // 100 output channels, 288 weights each
	{[]int{2, 64, 7, 5}, []int{130, 32, 1, 3}, convPads(1, 2, 0, 2, 0, 1, 2)}, // tiles in two groups
	{[]int{3, 1, 2, 300}, []int{2, 1, 1, 7}, convPads(1, 1, 0, 3, 1, 3, 1)},   // rows longer than a run
}

// TestConv2DBackwardFilterLevels checks every level, on one thread and on
// several, against the contract's transcription.
func TestConv2DBackwardFilterLevels(t *testing.T) {
	spec := specSession(t)
	forEachLevel(t, func(t *testing.T, k *kernels) {
		r := newRand(43)
		for i, c := range bfCases {
			ys, err := accel.Conv2DShape(c.xs, c.ws, nil, c.p)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			p := accel.Conv2DBackwardFilterParams{Conv2DParams: c.p, KernelH: c.ws[2], KernelW: c.ws[3]}
			for _, kind := range append(shortKinds(), "specials-dy") {
				dy, x := bdInputs(r, kind, product(ys), product(c.xs))
				want := bfRun(t, spec, x, dy, c.xs, ys, p)
				for _, threads := range shortThreads() {
					if got := bfRun(t, newSessionKernels(t, threads, k), x, dy, c.xs, ys, p); !sameBits(got, want) {
						t.Errorf("case %d %v %v %+v %s, %d threads: differs from the contract: %s", i, c.xs, c.ws, c.p, kind, threads, firstDiff(got, want))
					}
				}
			}
		}
	})
}

func bfRun(t *testing.T, s *accel.Session, x, dy []float32, xs, ys []int, p accel.Conv2DBackwardFilterParams) []float32 {
	t.Helper()
	in := []*accel.Tensor{tensorF32(t, s, xs, x), tensorF32(t, s, ys, dy)}
	out, err := s.Conv2DBackwardFilter(bg, in[0], in[1], p)
	if err != nil {
		t.Fatalf("conv2d_backward_filter %v %v %+v: %v", xs, ys, p, err)
	}
	return readFree(t, s, out, in...)
}

// readFree returns the elements of out and frees it and the inputs in, so
// that a session serves any number of calls.
func readFree(t *testing.T, s *accel.Session, out *accel.Tensor, in ...*accel.Tensor) []float32 {
	t.Helper()
	v := readF32(t, s, out)
	for _, x := range append(in, out) {
		if err := s.Free(x); err != nil {
			t.Fatalf("free: %v", err)
		}
	}
	return v
}

// TestConv2DBackwardFilterPaddedNonFinite places an infinite or NaN
// gradient in one run at a time where the windows meet padding, so that the
// run is summed term by term and the others through the micro-kernel.
func TestConv2DBackwardFilterPaddedNonFinite(t *testing.T) {
	spec, s := specSession(t), newSession(t, 3)
	xs := []int{12, 2, 6, 6} // 432 terms, two runs, of weights [3, 2, 3, 3]
	p := accel.Conv2DBackwardFilterParams{Conv2DParams: convParams(1, 1, 1, 1), KernelH: 3, KernelW: 3}
	ys := []int{12, 3, 6, 6}
	r := newRand(44)
	for i, v := range []float32{inf, -inf, nanPay} {
		for _, at := range []int{0, 5*3*36 + 36 + 35, 11*3*36 + 2*36 + 6} {
			x, dy := randF32(r, product(xs)), randF32(r, product(ys))
			dy[at] = v
			x[i] = 0 // Inf·0 where a window lies inside
			want, got := bfRun(t, spec, x, dy, xs, ys, p), bfRun(t, s, x, dy, xs, ys, p)
			if !sameBits(got, want) {
				t.Errorf("%v at %d: differs from the contract: %s", v, at, firstDiff(got, want))
			}
		}
	}
}

// TestConvBackwardCancelled checks that both kernels give up on a context
// that has ended.
func TestConvBackwardCancelled(t *testing.T) {
	s := newSession(t, 2)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	p := convParams(1, 1, 1, 1)
	x := tensorF32(t, s, []int{2, 4, 20, 20}, randF32(newRand(45), 3200))
	w := tensorF32(t, s, []int{8, 4, 3, 3}, randF32(newRand(46), 288))
	dy := tensorF32(t, s, []int{2, 8, 20, 20}, randF32(newRand(47), 6400))
	if _, err := s.Conv2DBackwardData(ctx, dy, w, accel.Conv2DBackwardDataParams{Conv2DParams: p, InputH: 20, InputW: 20}); !errors.Is(err, context.Canceled) {
		t.Errorf("conv2d_backward_data on an ended context: %v", err)
	}
	if _, err := s.Conv2DBackwardFilter(ctx, x, dy, accel.Conv2DBackwardFilterParams{Conv2DParams: p, KernelH: 3, KernelW: 3}); !errors.Is(err, context.Canceled) {
		t.Errorf("conv2d_backward_filter on an ended context: %v", err)
	}
}

// convBenchCases are the layers the backward benchmarks time: the two
// convolutions of an MNIST network over a batch of 64, and a 3x3 layer of
// ResNet-50 over a batch of 8.
var convBenchCases = []struct {
	name   string
	xs, ws []int
	p      accel.Conv2DParams
}{
	{"mnist1_64x1x28x28_16x5x5", []int{64, 1, 28, 28}, []int{16, 1, 5, 5}, convParams(1, 2, 1, 1)},
	{"mnist2_64x16x14x14_32x5x5", []int{64, 16, 14, 14}, []int{32, 16, 5, 5}, convParams(1, 2, 1, 1)},
	{"resnet50_8x64x56x56_64x3x3", []int{8, 64, 56, 56}, []int{64, 64, 3, 3}, convParams(1, 1, 1, 1)},
	{"stride2_8x64x56x56_64x3x3", []int{8, 64, 56, 56}, []int{64, 64, 3, 3}, convParams(2, 1, 1, 1)},
}

// BenchmarkConv2DBackwardData times the gradient of the input of each
// layer with every kernel level, on one thread and on every core.
func BenchmarkConv2DBackwardData(b *testing.B) {
	for _, c := range convBenchCases {
		b.Run(c.name, func(b *testing.B) {
			ys, err := accel.Conv2DShape(c.xs, c.ws, nil, c.p)
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			dys, wts := randF32(r, product(ys)), randF32(r, product(c.ws))
			p := accel.Conv2DBackwardDataParams{Conv2DParams: c.p, InputH: c.xs[2], InputW: c.xs[3]}
			for _, kern := range kernelLevels {
				for _, threads := range benchThreads() {
					b.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(b *testing.B) {
						s := newSessionKernels(b, threads, kern)
						dy, w := tensorF32(b, s, ys, dys), tensorF32(b, s, c.ws, wts)
						for b.Loop() {
							out, err := s.Conv2DBackwardData(bg, dy, w, p)
							if err != nil {
								b.Fatal(err)
							}
							s.Free(out)
						}
						b.ReportMetric(convFlops(ys, c.ws)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		})
	}
}

// BenchmarkConv2DBackwardFilter times the gradient of the weights of each
// layer with every kernel level, on one thread and on every core.
func BenchmarkConv2DBackwardFilter(b *testing.B) {
	for _, c := range convBenchCases {
		b.Run(c.name, func(b *testing.B) {
			ys, err := accel.Conv2DShape(c.xs, c.ws, nil, c.p)
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(7, 8))
			xs, dys := randF32(r, product(c.xs)), randF32(r, product(ys))
			p := accel.Conv2DBackwardFilterParams{Conv2DParams: c.p, KernelH: c.ws[2], KernelW: c.ws[3]}
			for _, kern := range kernelLevels {
				for _, threads := range benchThreads() {
					b.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(b *testing.B) {
						s := newSessionKernels(b, threads, kern)
						x, dy := tensorF32(b, s, c.xs, xs), tensorF32(b, s, ys, dys)
						for b.Loop() {
							out, err := s.Conv2DBackwardFilter(bg, x, dy, p)
							if err != nil {
								b.Fatal(err)
							}
							s.Free(out)
						}
						b.ReportMetric(convFlops(ys, c.ws)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		})
	}
}

// convFlops counts the multiplications and additions of a convolution's
// output ys with weights ws, padding included, as libraries count them.
func convFlops(ys, ws []int) float64 {
	return 2 * float64(product(ys)) * float64(ws[1]*ws[2]*ws[3])
}
