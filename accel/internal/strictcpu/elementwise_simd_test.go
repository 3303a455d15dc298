package strictcpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// relu and clip on the SIMD loops (elementwise_amd64.s) against the portable
// loops, which define them, bit for bit.

// clipBounds are the bounds the clip tests run: ReLU6, bounds that are not
// powers of two, lo above hi, zero bounds of opposite signs, infinite and
// the largest finite bounds, and bounds equal to each other.
var clipBounds = []accel.ClipParams{
	{Min: 0, Max: 6},
	{Min: -0.5, Max: 0.75},
	{Min: 1, Max: -1},
	{Min: 0, Max: negZ},
	{Min: negZ, Max: 0},
	{Min: -inf, Max: inf},
	{Min: -math.MaxFloat32, Max: math.MaxFloat32},
	{Min: 0, Max: 0},
	{Min: negZ, Max: negZ},
	{Min: inf, Max: inf},
	{Min: -inf, Max: -inf},
	{Min: math.Float32frombits(1), Max: math.SmallestNonzeroFloat32 * 4},
}

// elemSpecials returns the special inputs of relu and clip between lo and
// hi: zeros, infinities, NaNs of either sign with various payloads (quiet
// and signalling), subnormals, the extreme finite values, the bounds, their
// negations and their neighbours. The count is odd, so that repeating the
// list puts every value in every lane of a vector.
func elemSpecials(lo, hi float32) []float32 {
	v := []float32{
		0, negZ, inf, -inf, 1, -1, 6, 0.5, -0.5,
		math.MaxFloat32, -math.MaxFloat32,
		math.Float32frombits(0x00800000), math.Float32frombits(0x80800000), // the smallest normals
		math.Float32frombits(1), math.Float32frombits(0x80000001), // the smallest subnormals
		math.Float32frombits(0x007fffff), math.Float32frombits(0x807fffff), // the largest subnormals
		math.Float32frombits(0x00400000),
	}
	for _, b := range []uint32{
		0x7fc00000, 0xffc00000, // the canonical NaN and its negation
		0x7fc00001, 0xffc01234, 0x7fffffff, 0xffffffff, // quiet NaNs with payloads
		0x7f800001, 0xff800001, 0x7fa5a5a5, 0xffbfffff, // signalling NaNs
	} {
		v = append(v, math.Float32frombits(b))
	}
	for _, b := range []float32{lo, hi} {
		v = append(v, b, -b, math.Nextafter32(b, inf), math.Nextafter32(b, -inf))
	}
	if len(v)%2 == 0 {
		v = append(v, 0.25)
	}
	return v
}

// elemInputs returns n inputs for clip between lo and hi: the special values
// in turn, every one in every lane, when spec is set; else normal values of
// several scales with a third of them special.
func elemInputs(r *rand.Rand, n int, lo, hi float32, spec bool) []float32 {
	sp := elemSpecials(lo, hi)
	x := make([]float32, n)
	for i := range x {
		switch {
		case spec:
			x[i] = sp[i%len(sp)]
		case r.IntN(3) == 0:
			x[i] = sp[r.IntN(len(sp))]
		default:
			x[i] = float32(r.NormFloat64() * []float64{1e-3, 1, 4, 1e20}[r.IntN(4)])
		}
	}
	return x
}

// elemLengths are the lengths of the SIMD tests: every one up to 40, so
// every length of the tail, and a long odd one.
func elemLengths() []int {
	var ns []int
	for n := range 41 {
		ns = append(ns, n)
	}
	return append(ns, 1001)
}

// checkElemSIMD runs simd and then the portable loop on the rest, as the
// kernels do, and compares the outputs with the portable loop's alone, into
// separate memory and in place. Elements past the output must stay as they
// were.
func checkElemSIMD(t *testing.T, what string, x []float32, simd func(y, x []float32) int, portable func(y, x []float32)) {
	t.Helper()
	n := len(x)
	sentinel := math.Float32frombits(0x7fbadbad)
	fill := func() []float32 {
		y := make([]float32, n+8)
		for i := range y {
			y[i] = sentinel
		}
		return y
	}
	want := fill()
	portable(want[:n], x)

	got := fill()
	done := simd(got[:n], x)
	if done != n&^7 {
		t.Fatalf("%s, n=%d: the SIMD loop took %d elements, want %d", what, n, done, n&^7)
	}
	portable(got[done:n], x[done:])
	if !sameBits(got, want) {
		t.Errorf("%s, n=%d: %s", what, n, firstDiff(got, want))
	}

	inPlace := fill()
	copy(inPlace, x)
	done = simd(inPlace[:n], inPlace[:n])
	portable(inPlace[done:n], inPlace[done:n])
	if !sameBits(inPlace, want) {
		t.Errorf("%s, n=%d, in place: %s", what, n, firstDiff(inPlace, want))
	}
}

// skipWithoutElemSIMD skips t where relu and clip have no SIMD loops.
func skipWithoutElemSIMD(t *testing.T) {
	t.Helper()
	if !elemSIMD {
		t.Skip("no SIMD loops of relu and clip here: the CPU lacks AVX2, or the build is not amd64 or has the purego tag")
	}
}

func TestReluSIMD(t *testing.T) {
	skipWithoutElemSIMD(t)
	r := newRand(71)
	for _, n := range elemLengths() {
		for _, spec := range []bool{true, false} {
			x := elemInputs(r, n, 0, 0, spec)
			checkElemSIMD(t, fmt.Sprintf("relu (specials %v)", spec), x, reluSIMD, relu)
		}
	}
}

func TestClipSIMD(t *testing.T) {
	skipWithoutElemSIMD(t)
	r := newRand(72)
	for _, p := range clipBounds {
		simd := func(y, x []float32) int { return clipSIMD(y, x, p.Min, p.Max) }
		portable := func(y, x []float32) { clip(y, x, p.Min, p.Max) }
		for _, n := range elemLengths() {
			for _, spec := range []bool{true, false} {
				x := elemInputs(r, n, p.Min, p.Max, spec)
				what := fmt.Sprintf("clip [%v (%#08x), %v (%#08x)] (specials %v)", p.Min, math.Float32bits(p.Min), p.Max, math.Float32bits(p.Max), spec)
				checkElemSIMD(t, what, x, simd, portable)
			}
		}
	}
}

// TestReluClipLevels runs relu and clip through the kernels of every level,
// on lengths that leave tails in the chunks forEach hands out, and compares
// them with the portable kernels.
func TestReluClipLevels(t *testing.T) {
	lengths := []int{1, 7, 8, 9, 40, 1001, elemChunk - 1, elemChunk + 9, 3*elemChunk + 5}
	forEachLevel(t, func(t *testing.T, k *kernels) {
		r := newRand(73)
		for _, n := range lengths {
			for _, threads := range shortThreads() {
				s, ps := newSessionKernels(t, threads, k), sessionOn(t, NewPortable(1))
				x := elemInputs(r, n, 0, 6, n%2 == 0)
				got, err := s.Relu(bg, tensorF32(t, s, []int{n}, x))
				if err != nil {
					t.Fatal(err)
				}
				want, err := ps.Relu(bg, tensorF32(t, ps, []int{n}, x))
				if err != nil {
					t.Fatal(err)
				}
				if g, w := readF32(t, s, got), readF32(t, ps, want); !sameBits(g, w) {
					t.Errorf("relu n=%d threads=%d: %s", n, threads, firstDiff(g, w))
				}
				for _, p := range clipBounds {
					x := elemInputs(r, n, p.Min, p.Max, n%2 == 1)
					got, err := s.Clip(bg, tensorF32(t, s, []int{n}, x), p.Min, p.Max)
					if err != nil {
						t.Fatal(err)
					}
					want, err := ps.Clip(bg, tensorF32(t, ps, []int{n}, x), p.Min, p.Max)
					if err != nil {
						t.Fatal(err)
					}
					if g, w := readF32(t, s, got), readF32(t, ps, want); !sameBits(g, w) {
						t.Errorf("clip %+v n=%d threads=%d: %s", p, n, threads, firstDiff(g, w))
					}
					s.Free(got)
					ps.Free(want)
				}
			}
		}
	})
}

// TestClipHand checks clip's comparisons and zero signs worked out by hand,
// on every level, with each case repeated to fill a vector and a tail.
func TestClipHand(t *testing.T) {
	nan := strictmath.NaN()
	sub := math.Float32frombits(1)
	for _, c := range []struct {
		name    string
		lo, hi  float32
		in, out []float32
	}{
		{"relu6", 0, 6,
			[]float32{-1, negZ, 0, sub, -sub, 5.5, 6, math.Nextafter32(6, inf), inf, -inf, nanPay},
			[]float32{0, negZ, 0, sub, 0, 5.5, 6, 6, 6, 0, nan}},
		// +0 below, -0 above: -0 < +0 and +0 > -0 are false, so zeros keep
		// their signs, values below become +0 and values above -0.
		{"+0 and -0", 0, negZ,
			[]float32{0, negZ, -1, 1, sub, -sub, inf, -inf, nanPay},
			[]float32{0, negZ, 0, negZ, negZ, 0, negZ, 0, nan}},
		// lo above hi: every number becomes hi.
		{"lo above hi", 1, -1,
			[]float32{0, negZ, 5, -5, 1, -1, inf, -inf, nanPay},
			[]float32{-1, -1, -1, -1, -1, -1, -1, -1, nan}},
		// Infinite bounds change nothing but NaNs.
		{"infinite bounds", -inf, inf,
			[]float32{negZ, 0, -math.MaxFloat32, inf, -inf, -sub, nanPay, math.Float32frombits(0x7f800001)},
			[]float32{negZ, 0, -math.MaxFloat32, inf, -inf, -sub, nan, nan}},
		{"largest finite bounds", -math.MaxFloat32, math.MaxFloat32,
			[]float32{inf, -inf, math.MaxFloat32, 1, negZ},
			[]float32{math.MaxFloat32, -math.MaxFloat32, math.MaxFloat32, 1, negZ}},
		{"between", -0.5, 0.75,
			[]float32{-0.5, math.Nextafter32(-0.5, -inf), math.Nextafter32(-0.5, 0), 0.75, math.Nextafter32(0.75, inf), negZ},
			[]float32{-0.5, -0.5, math.Nextafter32(-0.5, 0), 0.75, 0.75, negZ}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachLevel(t, func(t *testing.T, k *kernels) {
				in, want := slices.Repeat(c.in, 3), slices.Repeat(c.out, 3)
				for _, n := range []int{len(c.in), len(in)} {
					s := newSessionKernels(t, 2, k)
					out, err := s.Clip(bg, tensorF32(t, s, []int{n}, in[:n]), c.lo, c.hi)
					if err != nil {
						t.Fatalf("clip: %v", err)
					}
					checkBits(t, fmt.Sprintf("%d elements", n), readF32(t, s, out), want[:n])
				}
			})
		})
	}
}

// TestReluHandLevels checks relu's hand-worked values on every level, each
// repeated to fill vectors and a tail.
func TestReluHandLevels(t *testing.T) {
	sub := math.Float32frombits(1)
	in := []float32{1.5, -1.5, 0, negZ, inf, -inf, nanPay, strictmath.NaN(), sub, -sub, math.Float32frombits(0x7f800001)}
	want := []float32{1.5, 0, 0, 0, inf, 0, strictmath.NaN(), strictmath.NaN(), sub, 0, strictmath.NaN()}
	forEachLevel(t, func(t *testing.T, k *kernels) {
		x, y := slices.Repeat(in, 3), slices.Repeat(want, 3)
		s := newSessionKernels(t, 2, k)
		out, err := s.Relu(bg, tensorF32(t, s, []int{len(x)}, x))
		if err != nil {
			t.Fatalf("relu: %v", err)
		}
		checkBits(t, "relu", readF32(t, s, out), y)
	})
}
