package conformance

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

type matmulCase struct {
	name    string
	m, k, n int
	p       accel.MatMulParams
	a, b    fill // the operands as stored: a is [K,M] with TransA, b is [N,K] with TransB
}

var (
	noTrans = accel.MatMulParams{}
	transA  = accel.MatMulParams{TransA: true}
	transB  = accel.MatMulParams{TransB: true}
	transAB = accel.MatMulParams{TransA: true, TransB: true}
)

var matmulCases = []matmulCase{
	{name: "1x1x1", m: 1, k: 1, n: 1, a: uniform(-1, 1), b: uniform(-1, 1)},
	{name: "odd-7x13x5", m: 7, k: 13, n: 5, a: uniform(-1, 1), b: uniform(-1, 1)},
	{name: "odd-37x53x29", m: 37, k: 53, n: 29, a: normal(1), b: normal(1)},
	{name: "blocks-129x67x131", m: 129, k: 67, n: 131, a: normal(1), b: uniform(-2, 2)},
	{name: "tall-1000x16x2", m: 1000, k: 16, n: 2, a: normal(1), b: normal(1)},
	{name: "wide-2x16x1000", m: 2, k: 16, n: 1000, a: normal(1), b: normal(1)},
	{name: "skinny-k-64x1x48", m: 64, k: 1, n: 48, a: normal(1), b: normal(1)},
	{name: "long-k-4x4097x3", m: 4, k: 4097, n: 3, a: normal(1), b: uniform(-1, 1)},
	{name: "large-130x600x100", m: 130, k: 600, n: 100, a: magnitudes(-20, 20), b: magnitudes(-20, 20)},
	{name: "large-trans-a-70x300x197", m: 70, k: 300, n: 197, p: transA, a: magnitudes(-20, 20), b: normal(1)},
	{name: "few-rows-3x700x300", m: 3, k: 700, n: 300, a: magnitudes(-20, 20), b: magnitudes(-20, 20)},
	{name: "few-rows-trans-b-3x300x300", m: 3, k: 300, n: 300, p: transB, a: magnitudes(-20, 20), b: normal(1)},

	// The transpose flags change where elements are read, never the order.
	{name: "notrans-19x23x17", m: 19, k: 23, n: 17, p: noTrans, a: normal(1), b: normal(1)},
	{name: "trans-a-19x23x17", m: 19, k: 23, n: 17, p: transA, a: normal(1), b: normal(1)},
	{name: "trans-b-19x23x17", m: 19, k: 23, n: 17, p: transB, a: normal(1), b: normal(1)},
	{name: "trans-ab-19x23x17", m: 19, k: 23, n: 17, p: transAB, a: normal(1), b: normal(1)},
	{name: "trans-ab-1x1x1", m: 1, k: 1, n: 1, p: transAB, a: uniform(-1, 1), b: uniform(-1, 1)},

	// The order of summation shows in the bits: (1e8 + 1) - 1e8 is 0 in
	// binary32, and magnitudes over 2^±30 round and cancel everywhere.
	{name: "cancel-2x3x2", m: 2, k: 3, n: 2, a: cycle(1e8, 1, -1e8), b: cycle(1)},
	{name: "order-9x300x7", m: 9, k: 300, n: 7, a: magnitudes(-30, 30), b: magnitudes(-30, 30)},
	{name: "order-trans-ab-9x300x7", m: 9, k: 300, n: 7, p: transAB, a: magnitudes(-30, 30), b: magnitudes(-30, 30)},

	// Special values.
	{name: "neg-zero-k1", m: 2, k: 1, n: 3, a: cycle(negZero), b: cycle(1, -1, negZero)}, // +0 + -0 is +0
	{name: "neg-zero-3x4x5", m: 3, k: 4, n: 5, a: cycle(negZero), b: pick(1, -2, 0, negZero)},
	{name: "subnormal-5x6x7", m: 5, k: 6, n: 7, a: pick(minSub, -minSub, maxSub, minNormal, 3e-39), b: pick(0.5, 1, 2, -0.75, 0x1p-3)},
	{name: "underflow-4x5x6", m: 4, k: 5, n: 6, a: pick(1e-20, -3e-21, 2e-30), b: pick(1e-20, 7e-19, -2e-25)},
	{name: "near-overflow-6x5x4", m: 6, k: 5, n: 4, a: magnitudes(60, 63), b: magnitudes(60, 63)},
	{name: "near-overflow-trans-b-6x5x4", m: 6, k: 5, n: 4, p: transB, a: pick(nearSqrtMx, -nearSqrtMx, 1), b: pick(nearSqrtMx, -nearSqrtMx, 1e19)},
	{name: "specials-9x7x8", m: 9, k: 7, n: 8, a: pick(specials...), b: pick(specials...)},
	{name: "specials-trans-a-8x3x9", m: 8, k: 3, n: 9, p: transA, a: pick(specials...), b: pick(specials...)},
	{name: "sparse-specials-33x65x17", m: 33, k: 65, n: 17, a: mix(0.02, normal(1), pick(specials...)), b: mix(0.01, normal(1), pick(specials...))},
}

// TestMatMul checks matmul over a table of shapes, transposes and special
// values, including batch invariance: a matmul of some of the rows of A
// equals those rows of the full product.
func TestMatMul(t *testing.T, b accel.Backend) {
	for _, c := range matmulCases {
		t.Run(c.name, func(t *testing.T) {
			r := rng("matmul/" + c.name)
			a, bm := c.a(r, c.m*c.k), c.b(r, c.k*c.n)
			full := checkCall(t, b, matmulCall(a, bm, c.m, c.k, c.n, c.p))
			for _, rs := range rowSubsets(c.m) {
				lo, hi := rs[0], rs[1]
				part := checkCall(t, b, matmulCall(rowsOf(a, c.m, c.k, c.p.TransA, lo, hi), bm, hi-lo, c.k, c.n, c.p))
				what := fmt.Sprintf("rows %d..%d computed alone (indices from row %d)", lo, hi-1, lo)
				invariant(t, b, what, []int{hi - lo, c.n}, part, full[lo*c.n:hi*c.n])
			}
		})
	}
}

func matmulCall(a, b []float32, m, k, n int, p accel.MatMulParams) opCall {
	as, bs := []int{m, k}, []int{k, n}
	if p.TransA {
		as = []int{k, m}
	}
	if p.TransB {
		bs = []int{n, k}
	}
	return opCall{
		inputs: []input{{name: "a", shape: as, f32: a}, {name: "b", shape: bs, f32: b}},
		run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
			return s.MatMul(ctx, in[0], in[1], p)
		},
		shape: []int{m, n},
		spec:  func() []float32 { return specMatMul(a, b, m, k, n, p) },
		f64:   func() []ev { return f64MatMul(a, b, m, k, n, p) },
	}
}

// rowSubsets lists row ranges [lo, hi) of an M-row product to recompute
// alone: the first row, the last row and a block from the middle.
func rowSubsets(m int) [][2]int {
	if m < 2 {
		return nil
	}
	subs := [][2]int{{0, 1}, {m - 1, m}}
	if m >= 4 {
		subs = append(subs, [2]int{m / 4, m/4 + m/2})
	}
	return subs
}

// rowsOf returns rows lo..hi-1 of op(A), stored as a is: A is [M,K], or
// [K,M] when transposed.
func rowsOf(a []float32, m, k int, trans bool, lo, hi int) []float32 {
	if !trans {
		return slices.Clone(a[lo*k : hi*k])
	}
	sub := make([]float32, 0, k*(hi-lo))
	for kk := range k {
		sub = append(sub, a[kk*m+lo:kk*m+hi]...)
	}
	return sub
}
