package strictcpu

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var (
	inf    = float32(math.Inf(1))
	negZ   = float32(math.Copysign(0, -1))
	nanPay = math.Float32frombits(0xffc01234) // a NaN with a sign and a payload
)

// sameBits reports whether got and want hold identical bit patterns.
func sameBits(got, want []float32) bool {
	return slices.EqualFunc(got, want, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) })
}

func bitsOf(v []float32) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%#08x(%g)", math.Float32bits(x), x)
	}
	return s
}

func checkBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if !sameBits(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", name, bitsOf(got), bitsOf(want))
	}
}

func TestMatMulHand(t *testing.T) {
	for _, c := range []struct {
		name   string
		a, b   []float32
		ashape []int
		bshape []int
		p      accel.MatMulParams
		want   []float32
	}{
		{name: "2x2", a: []float32{1, 2, 3, 4}, ashape: []int{2, 2}, b: []float32{5, 6, 7, 8}, bshape: []int{2, 2},
			want: []float32{19, 22, 43, 50}},
		// Aᵀ stored [K, M] = [[1, 3], [2, 4]] is A = [[1, 2], [3, 4]].
		{name: "trans a", a: []float32{1, 3, 2, 4}, ashape: []int{2, 2}, b: []float32{5, 6, 7, 8}, bshape: []int{2, 2},
			p: accel.MatMulParams{TransA: true}, want: []float32{19, 22, 43, 50}},
		// Bᵀ stored [N, K] = [[5, 7], [6, 8]] is B = [[5, 6], [7, 8]].
		{name: "trans b", a: []float32{1, 2, 3, 4}, ashape: []int{2, 2}, b: []float32{5, 7, 6, 8}, bshape: []int{2, 2},
			p: accel.MatMulParams{TransB: true}, want: []float32{19, 22, 43, 50}},
		{name: "trans both", a: []float32{1, 3, 2, 4}, ashape: []int{2, 2}, b: []float32{5, 7, 6, 8}, bshape: []int{2, 2},
			p: accel.MatMulParams{TransA: true, TransB: true}, want: []float32{19, 22, 43, 50}},
		// [1x3]·[3x2]: row order matters. 1e8 + 1 rounds back to 1e8, so
		// summing k in order gives 0 and 2; any other order would not.
		{name: "k order", a: []float32{1, 1, 1}, ashape: []int{1, 3}, b: []float32{1e8, 1, 1, 1e8, -1e8, -1e8}, bshape: []int{3, 2},
			want: []float32{0, 0}},
		{name: "k order wide", a: []float32{1, 1, 1, 1, 1, 1}, ashape: []int{2, 3}, b: []float32{1e8, 1e8, 1, -1e8, -1e8, 3}, bshape: []int{3, 2},
			want: []float32{0, 3, 0, 3}},
		// -1·0 = -0, but the sum starts at +0.
		{name: "negative zero", a: []float32{-1}, ashape: []int{1, 1}, b: []float32{0}, bshape: []int{1, 1}, want: []float32{0}},
		{name: "nan canonical", a: []float32{nanPay, 1}, ashape: []int{1, 2}, b: []float32{1, 1}, bshape: []int{2, 1}, want: []float32{strictmath.NaN()}},
		{name: "inf times zero", a: []float32{inf, 1}, ashape: []int{1, 2}, b: []float32{0, 1}, bshape: []int{2, 1}, want: []float32{strictmath.NaN()}},
		{name: "inf", a: []float32{inf, 1}, ashape: []int{1, 2}, b: []float32{2, 1}, bshape: []int{2, 1}, want: []float32{inf}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, threads := range []int{1, 3} {
				s := newSession(t, threads)
				a := tensorF32(t, s, c.ashape, c.a)
				b := tensorF32(t, s, c.bshape, c.b)
				out, err := s.MatMul(bg, a, b, c.p)
				if err != nil {
					t.Fatalf("matmul: %v", err)
				}
				checkBits(t, c.name, readF32(t, s, out), c.want)
			}
		})
	}
}

// naiveMatMul is the contract's matmul, written out directly, to check the
// blocking of the fast kernels.
func naiveMatMul(a, b []float32, m, k, n int, p accel.MatMulParams) []float32 {
	c := make([]float32, m*n)
	for i := range m {
		for j := range n {
			var s float32
			for kk := range k {
				av := a[i*k+kk]
				if p.TransA {
					av = a[kk*m+i]
				}
				bv := b[kk*n+j]
				if p.TransB {
					bv = b[j*k+kk]
				}
				s = s + float32(av*bv)
			}
			c[i*n+j] = strictmath.Canon(s)
		}
	}
	return c
}

func TestMatMulBlocking(t *testing.T) {
	r := newRand(7)
	for _, d := range [][3]int{{1, 1, 1}, {3, 1, 5}, {1, 600, 1}, {2, 300, 700}, {5, 513, 97}, {131, 257, 193}, {64, 256, 96}, {67, 3, 1}} {
		m, k, n := d[0], d[1], d[2]
		for _, p := range []accel.MatMulParams{{}, {TransA: true}, {TransB: true}, {TransA: true, TransB: true}} {
			a, b := randF32(r, m*k), randF32(r, k*n)
			ashape, bshape := []int{m, k}, []int{k, n}
			if p.TransA {
				ashape = []int{k, m}
			}
			if p.TransB {
				bshape = []int{n, k}
			}
			s := newSession(t, 2)
			out, err := s.MatMul(bg, tensorF32(t, s, ashape, a), tensorF32(t, s, bshape, b), p)
			if err != nil {
				t.Fatalf("matmul %v %+v: %v", d, p, err)
			}
			if got, want := readF32(t, s, out), naiveMatMul(a, b, m, k, n, p); !sameBits(got, want) {
				t.Errorf("matmul %v %+v differs from the plain loop", d, p)
			}
		}
	}
}
