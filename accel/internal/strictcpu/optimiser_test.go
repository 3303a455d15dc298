package strictcpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The loss and the optimiser steps against the contract written out here
// once more, on every thread count and on the portable kernels.

// sceWant is softmax_cross_entropy as docs/determinism.md writes it.
func sceWant(x []float32, labels []int32, k int) (dlogits []float32, loss float32) {
	n := len(labels)
	dlogits = make([]float32, len(x))
	losses := make([]float32, n)
	e := make([]float32, k)
	for i := range n {
		row := x[i*k : (i+1)*k]
		m := row[0]
		for _, v := range row[1:] {
			if m == m && (v != v || v > m) {
				m = v
			}
		}
		var s float32
		for j, v := range row {
			e[j] = strictmath.Exp(v - m)
			s = s + e[j]
		}
		for j := range row {
			p := e[j] / s
			if j == int(labels[i]) {
				dlogits[i*k+j] = strictmath.Canon((p - 1) / float32(n))
			} else {
				dlogits[i*k+j] = strictmath.Canon(p / float32(n))
			}
		}
		losses[i] = strictmath.Log(s) - (row[labels[i]] - m)
	}
	return dlogits, strictmath.Canon(strictmath.BlockSum(losses) / float32(n))
}

// sceRun runs softmax_cross_entropy on kernels k.
func sceRun(t *testing.T, k *Kernels, x []float32, labels []int32, kk int) ([]float32, float32) {
	t.Helper()
	s := sessionOn(t, k)
	n := len(labels)
	out, loss, err := s.SoftmaxCrossEntropy(bg, tensorF32(t, s, []int{n, kk}, x), tensorI32(t, s, []int{n}, labels))
	if err != nil {
		t.Fatalf("softmax_cross_entropy [%d,%d]: %v", n, kk, err)
	}
	return readF32(t, s, out), loss
}

// kernelSets are the kernels every result must agree across: one thread,
// several (both of the loss's ways of splitting rows), and the portable
// loops.
func kernelSets() map[string]*Kernels {
	return map[string]*Kernels{
		"1 thread": New(1), "2 threads": New(2), "3 threads": New(3), "16 threads": New(16),
		"portable, 4 threads": NewPortable(4),
	}
}

func TestSoftmaxCrossEntropy(t *testing.T) {
	r := newRand(61)
	for _, d := range [][2]int{
		{1, 1}, {5, 1}, {1, 7}, {3, 10}, {64, 10}, {255, 4}, {256, 3}, {257, 3}, {700, 13},
		{1023, 2}, {2049, 5}, {3, 70000}, {300, 300},
	} {
		n, k := d[0], d[1]
		x := sprinkle(randF32(r, n*k))
		for i := range x {
			x[i] *= 8
		}
		labels := make([]int32, n)
		for i := range labels {
			labels[i] = int32(r.IntN(k))
		}
		labels[0], labels[n-1] = 0, int32(k-1)
		want, wantLoss := sceWant(x, labels, k)
		for name, kern := range kernelSets() {
			got, loss := sceRun(t, kern, x, labels, k)
			if !sameBits(got, want) {
				t.Errorf("[%d,%d] on %s: dlogits differ from the contract: %s", n, k, name, firstDiff(got, want))
			}
			if math.Float32bits(loss) != math.Float32bits(wantLoss) {
				t.Errorf("[%d,%d] on %s: loss %v (%#x), want %v (%#x)", n, k, name, loss, math.Float32bits(loss), wantLoss, math.Float32bits(wantLoss))
			}
		}
	}
}

// TestSoftmaxCrossEntropyHand checks rows worked out by hand.
func TestSoftmaxCrossEntropyHand(t *testing.T) {
	nan := strictmath.NaN()
	for _, c := range []struct {
		name     string
		x        []float32
		labels   []int32
		k        int
		want     []float32
		wantLoss float32
	}{
		// One class: p = 1, no loss, no gradient.
		{"one class", []float32{3, -inf, 1e30}, []int32{0, 0, 0}, 1, []float32{0, nan, 0}, nan},
		{"one class, finite", []float32{3, -5}, []int32{0, 0}, 1, []float32{0, 0}, 0},
		// Two equal logits: p = 1/2, loss log 2.
		{"even", []float32{7, 7}, []int32{1}, 2, []float32{0.5, -0.5}, strictmath.Log(2)},
		// A logit so large that the others' exp is 0: no loss when it is the
		// label, and a loss of the gap otherwise.
		{"huge", []float32{1e30, 0, 2}, []int32{0}, 3, []float32{0, 0, 0}, 0},
		{"huge, missed", []float32{0, 1e30, 2}, []int32{0}, 3, []float32{-1, 1, 0}, 1e30},
		// A label on a -Inf logit: an infinite loss.
		{"label at -inf", []float32{-inf, 0}, []int32{0}, 2, []float32{-1, 1}, inf},
		// x[label] - m overflows: an infinite loss.
		{"overflowing gap", []float32{-math.MaxFloat32, math.MaxFloat32}, []int32{0}, 2, []float32{-1, 1}, inf},
		{"+inf", []float32{inf, 0}, []int32{1}, 2, []float32{nan, nan}, nan},
	} {
		got, loss := sceRun(t, New(2), c.x, c.labels, c.k)
		if !sameBits(got, c.want) {
			t.Errorf("%s: dlogits %v, want %v", c.name, got, c.want)
		}
		if math.Float32bits(loss) != math.Float32bits(c.wantLoss) {
			t.Errorf("%s: loss %v, want %v", c.name, loss, c.wantLoss)
		}
	}
}

// sgdWant is sgd_momentum as the contract writes it.
func sgdWant(w, g, vel []float32, p accel.SGDParams) (nw, nv []float32) {
	nw, nv = make([]float32, len(w)), make([]float32, len(w))
	for i := range w {
		v := float32(p.Momentum*vel[i]) + g[i]
		nv[i] = strictmath.Canon(v)
		nw[i] = strictmath.Canon(w[i] - float32(p.LearningRate*v))
	}
	return nw, nv
}

// adamWant is adam as the contract writes it, with math/big's correctly
// rounded square root.
func adamWant(w, g, m, v []float32, p accel.AdamParams) (nw, nm, nv []float32) {
	nw, nm, nv = make([]float32, len(w)), make([]float32, len(w)), make([]float32, len(w))
	for i := range w {
		mi := float32(p.Beta1*m[i]) + float32((1-p.Beta1)*g[i])
		vi := float32(p.Beta2*v[i]) + float32((1-p.Beta2)*float32(g[i]*g[i]))
		d := bigSqrt(vi/p.Correction2) + p.Epsilon
		nw[i] = strictmath.Canon(w[i] - float32(p.LearningRate*((mi/p.Correction1)/d)))
		nm[i] = strictmath.Canon(mi)
		nv[i] = strictmath.Canon(vi)
	}
	return nw, nm, nv
}

// optimiserValues are the state and gradients of the tests: normal values
// with every special among them.
func optimiserValues(r *rand.Rand, n int, scale float32) []float32 {
	v := randF32(r, n)
	for i := range v {
		v[i] *= scale
	}
	specials := []float32{nanPay, inf, -inf, negZ, 0, math.Float32frombits(3), math.MaxFloat32, -math.MaxFloat32, 1e20}
	for i := range v {
		if r.IntN(50) == 0 {
			v[i] = specials[r.IntN(len(specials))]
		}
	}
	return v
}

func TestSGDMomentum(t *testing.T) {
	r := newRand(62)
	for _, n := range []int{1, 7, elemChunk - 1, 3*elemChunk + 5} {
		w, g, vel := optimiserValues(r, n, 1), optimiserValues(r, n, 0.1), optimiserValues(r, n, 0.1)
		for _, p := range []accel.SGDParams{{LearningRate: 0.01, Momentum: 0.9}, {LearningRate: 0.1}, {LearningRate: -3, Momentum: 1.5}} {
			wantW, wantV := sgdWant(w, g, vel, p)
			for name, kern := range kernelSets() {
				s := sessionOn(t, kern)
				wt, gt, vt := tensorF32(t, s, []int{n}, w), tensorF32(t, s, []int{n}, g), tensorF32(t, s, []int{n}, vel)
				if err := s.SGDMomentum(bg, wt, gt, vt, p); err != nil {
					t.Fatalf("sgd_momentum: %v", err)
				}
				what := fmt.Sprintf("n=%d %+v on %s", n, p, name)
				checkBits(t, what+": w", readF32(t, s, wt), wantW)
				checkBits(t, what+": velocity", readF32(t, s, vt), wantV)
				checkBits(t, what+": grad", readF32(t, s, gt), g)
			}
		}
	}
}

var adamDefaults = accel.AdamParams{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Correction1: 0.1, Correction2: 0.001}

func TestAdam(t *testing.T) {
	r := newRand(63)
	for _, n := range []int{1, 7, elemChunk - 1, 3*elemChunk + 5} {
		w, g, m := optimiserValues(r, n, 1), optimiserValues(r, n, 0.1), optimiserValues(r, n, 0.01)
		v := optimiserValues(r, n, 1e-3)
		for i := range v {
			v[i] = float32(math.Abs(float64(v[i])))
		}
		for _, p := range []accel.AdamParams{
			adamDefaults,
			{LearningRate: 0.01, Beta1: 0, Beta2: 0, Epsilon: 0, Correction1: 1, Correction2: 1},
			{LearningRate: -2, Beta1: 1.5, Beta2: -0.5, Epsilon: 1, Correction1: 1e-30, Correction2: 0.5},
		} {
			wantW, wantM, wantV := adamWant(w, g, m, v, p)
			for name, kern := range kernelSets() {
				s := sessionOn(t, kern)
				wt, gt := tensorF32(t, s, []int{n}, w), tensorF32(t, s, []int{n}, g)
				mt, vt := tensorF32(t, s, []int{n}, m), tensorF32(t, s, []int{n}, v)
				if err := s.Adam(bg, wt, gt, mt, vt, p); err != nil {
					t.Fatalf("adam: %v", err)
				}
				what := fmt.Sprintf("n=%d %+v on %s", n, p, name)
				checkBits(t, what+": w", readF32(t, s, wt), wantW)
				checkBits(t, what+": m", readF32(t, s, mt), wantM)
				checkBits(t, what+": v", readF32(t, s, vt), wantV)
				checkBits(t, what+": grad", readF32(t, s, gt), g)
			}
		}
	}
}

// An optimiser step whose context ended before it started changes nothing,
// and the loss stops within a long row.
func TestTrainingCancel(t *testing.T) {
	s := newSession(t, 2)
	const n = 1000
	r := newRand(64)
	w, g := randF32(r, n), randF32(r, n)
	wt, gt, st := tensorF32(t, s, []int{n}, w), tensorF32(t, s, []int{n}, g), tensorF32(t, s, []int{n}, g)
	vt := tensorF32(t, s, []int{n}, w)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := s.SGDMomentum(ctx, wt, gt, st, accel.SGDParams{LearningRate: 0.1, Momentum: 0.9}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sgd_momentum: %v, want context.Canceled", err)
	}
	if err := s.Adam(ctx, wt, gt, st, vt, adamDefaults); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled adam: %v, want context.Canceled", err)
	}
	checkBits(t, "w after cancelled steps", readF32(t, s, wt), w)
	checkBits(t, "velocity or m after cancelled steps", readF32(t, s, st), g)
	checkBits(t, "v after a cancelled step", readF32(t, s, vt), w)

	labels := tensorI32(t, s, []int{1}, []int32{0})
	const long = 1 << 24
	x := tensorF32(t, s, []int{1, long}, make([]float32, long))
	if _, _, err := s.SoftmaxCrossEntropy(ctx, x, labels); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled softmax_cross_entropy: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := s.SoftmaxCrossEntropy(ctx, x, labels); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("softmax_cross_entropy past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("softmax_cross_entropy took %v to notice its deadline", d)
	}
}

// bigSqrt is the square root of x rounded to float32 by math/big, which
// rounds to nearest even at the precision of a normal float32; the root of
// a positive float32 is always normal.
func bigSqrt(x float32) float32 {
	switch {
	case x != x || x < 0:
		return strictmath.NaN()
	case x == 0 || math.IsInf(float64(x), 1):
		return x
	}
	r, _ := new(big.Float).SetPrec(24).Sqrt(big.NewFloat(float64(x))).Float32()
	return r
}

// roundedRoot reports whether r is the correctly rounded root of a positive
// finite x, from exact arithmetic alone: x lies strictly between the
// squares of the midpoints around r. (A midpoint has 25 significant bits,
// its square 49 or 50, so a float32 is never one: no ties.)
func roundedRoot(x, r float32) bool {
	if !(r > 0) || math.IsInf(float64(r), 0) {
		return false
	}
	up := float64(math.Nextafter32(r, inf)) - float64(r)
	down := float64(r) - float64(math.Nextafter32(r, 0))
	lo := new(big.Float).SetPrec(200).SetFloat64(float64(r) - down/2) // exact: 25 bits
	hi := new(big.Float).SetPrec(200).SetFloat64(float64(r) + up/2)
	bx := new(big.Float).SetPrec(200).SetFloat64(float64(x))
	return new(big.Float).Mul(lo, lo).Cmp(bx) < 0 && bx.Cmp(new(big.Float).Mul(hi, hi)) < 0
}

// TestSqrt32 checks that adam's square root, the float64 root rounded to
// float32, is the correctly rounded float32 root the contract asks for: on
// special values, subnormals, powers of two, floats just beside the
// squares of midpoints (where a wrong rounding would show), and random bit
// patterns.
func TestSqrt32(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{
		{0, 0}, {negZ, negZ}, {inf, inf}, {-inf, strictmath.NaN()}, {-1, strictmath.NaN()},
		{-math.Float32frombits(1), strictmath.NaN()}, {4, 2}, {0.25, 0.5},
	} {
		if got := strictmath.Canon(sqrt32(c.x)); math.Float32bits(got) != math.Float32bits(c.want) {
			t.Errorf("sqrt32(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if got := sqrt32(nanPay); got == got {
		t.Errorf("sqrt32(NaN) = %v", got)
	}

	check := func(x float32) {
		if !(x > 0) || math.IsInf(float64(x), 0) {
			return
		}
		got := sqrt32(x)
		if !roundedRoot(x, got) {
			t.Fatalf("sqrt32(%v = %#08x) = %v (%#08x), not the correctly rounded root (big: %v)", x, math.Float32bits(x), got, math.Float32bits(got), bigSqrt(x))
		}
		// The check itself: neither neighbour of the root passes it.
		if roundedRoot(x, math.Nextafter32(got, 0)) || roundedRoot(x, math.Nextafter32(got, inf)) {
			t.Fatalf("a neighbour of %v passes as the root of %v", got, x)
		}
	}
	// Every subnormal below 2^-140, and the largest ones.
	for b := uint32(1); b < 1<<9; b++ {
		check(math.Float32frombits(b))
		check(math.Float32frombits(0x7fffff - b))
	}
	// Powers of two and their neighbours, over the whole range.
	for e := -149; e <= 127; e++ {
		x := float32(math.Ldexp(1, e))
		check(x)
		check(math.Nextafter32(x, 0))
		check(math.Nextafter32(x, inf))
	}
	// The floats nearest the square of each midpoint between consecutive
	// roots: the hardest cases for rounding.
	r := newRand(65)
	cases := 1 << 22
	if testing.Short() {
		cases = 1 << 16
	}
	for range cases / 8 {
		root := math.Float32frombits(0x00800000 + r.Uint32N(0x7f000000-0x00800000))
		mid := float64(root) + (float64(math.Nextafter32(root, inf))-float64(root))/2
		x := float32(mid * mid) // rounded: beside the midpoint's square
		check(x)
		check(math.Nextafter32(x, 0))
		check(math.Nextafter32(x, inf))
	}
	// Random bit patterns, subnormals included.
	for range cases - cases/8*3 {
		check(math.Float32frombits(r.Uint32() & 0x7fffffff))
	}
}
