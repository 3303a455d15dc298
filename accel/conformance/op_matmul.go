package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.MatMulParams]{
	op:    accel.MatMul,
	cases: matmulCases,
	spec:  func(p accel.MatMulParams, in []Tensor) [][]float32 { return [][]float32{specMatMul(in[0], in[1], p)} },
	float64: func(p accel.MatMulParams, in []Tensor) reference {
		return reference{results: [][]ev{f64MatMul(in[0], in[1], p)}}
	},
	parts: matmulParts,
})

var (
	noTrans = accel.MatMulParams{}
	transA  = accel.MatMulParams{TransA: true}
	transB  = accel.MatMulParams{TransB: true}
	transAB = accel.MatMulParams{TransA: true, TransB: true}
)

func matmulCases() []Case {
	var cases []Case
	// The grid: every value class on every size class.
	for _, sh := range []struct {
		size    string
		m, k, n int
		p       accel.MatMulParams
	}{
		{SizeTiny, 1, 1, 1, noTrans},
		{SizeOdd, 37, 53, 29, transB},
		{SizeTall, 1000, 16, 3, transA},
		{SizeSkinny, 3, 2049, 5, transAB},
		{SizeLarge, 256, 256, 256, noTrans},
	} {
		for _, class := range gridClasses {
			fa, fb, _ := productFills(class, sh.k)
			m, k, n, p := sh.m, sh.k, sh.n, sh.p
			cases = append(cases, gridCase(accel.MatMul, sh.size, dims(m, k, n), class, p, func(r *rand.Rand) []Tensor {
				// A and B are drawn as [M,K] and [K,N] (so that Cancel's
				// pairs lie along k) and stored as the flags say.
				a, b := fa(r, m*k), fb(r, k*n)
				if p.TransA {
					a = transpose(a, m, k)
				}
				if p.TransB {
					b = transpose(b, k, n)
				}
				return matmulInputs(a, b, m, k, n, p)
			}))
		}
	}

	// Shapes the grid misses, every transpose, and special values.
	for _, c := range []struct {
		size, label, values string
		m, k, n             int
		p                   accel.MatMulParams
		a, b                fill // the operands as stored: a is [K,M] with TransA, b is [N,K] with TransB
	}{
		{SizeOdd, "odd-7x13x5", Uniform, 7, 13, 5, noTrans, uniform(-1, 1), uniform(-1, 1)},
		{SizeOdd, "notrans-37x53x29", Normal, 37, 53, 29, noTrans, normal(1), normal(1)},
		{SizeLarge, "blocks-129x67x131", Normal, 129, 67, 131, noTrans, normal(1), uniform(-2, 2)},
		{SizeTall, "tall-1000x16x2", Normal, 1000, 16, 2, noTrans, normal(1), normal(1)},
		{SizeTall, "wide-2x16x1000", Normal, 2, 16, 1000, noTrans, normal(1), normal(1)},
		{SizeOdd, "k1-64x1x48", Normal, 64, 1, 48, noTrans, normal(1), normal(1)},
		{SizeSkinny, "long-k-4x4097x3", Normal, 4, 4097, 3, noTrans, normal(1), uniform(-1, 1)},
		{SizeLarge, "large-130x600x100", Wide, 130, 600, 100, noTrans, magnitudes(-20, 20), magnitudes(-20, 20)},
		{SizeLarge, "large-trans-a-70x300x197", Wide, 70, 300, 197, transA, magnitudes(-20, 20), normal(1)},
		{SizeLarge, "few-rows-3x700x300", Wide, 3, 700, 300, noTrans, magnitudes(-20, 20), magnitudes(-20, 20)},
		{SizeLarge, "few-rows-trans-b-3x300x300", Wide, 3, 300, 300, transB, magnitudes(-20, 20), normal(1)},

		// The transpose flags change where elements are read, never the order.
		{SizeOdd, "notrans-19x23x17", Normal, 19, 23, 17, noTrans, normal(1), normal(1)},
		{SizeOdd, "trans-a-19x23x17", Normal, 19, 23, 17, transA, normal(1), normal(1)},
		{SizeOdd, "trans-b-19x23x17", Normal, 19, 23, 17, transB, normal(1), normal(1)},
		{SizeOdd, "trans-ab-19x23x17", Normal, 19, 23, 17, transAB, normal(1), normal(1)},
		{SizeTiny, "trans-ab-1x1x1", Uniform, 1, 1, 1, transAB, uniform(-1, 1), uniform(-1, 1)},

		// The order of summation shows in the bits: (1e8 + 1) - 1e8 is 0 in
		// binary32, and magnitudes over 2^±30 round and cancel everywhere.
		{SizeOdd, "cancel-2x3x2", Cancel, 2, 3, 2, noTrans, cycle(1e8, 1, -1e8), cycle(1)},
		{SizeOdd, "order-9x300x7", Wide, 9, 300, 7, noTrans, magnitudes(-30, 30), magnitudes(-30, 30)},
		{SizeOdd, "order-trans-ab-9x300x7", Wide, 9, 300, 7, transAB, magnitudes(-30, 30), magnitudes(-30, 30)},

		// +0 + -0 is +0, and a sum starts at +0.
		{SizeOdd, "neg-zero-k1", NegZero, 2, 1, 3, noTrans, cycle(negZero), cycle(1, -1, negZero)},
		{SizeOdd, "neg-zero-3x4x5", NegZero, 3, 4, 5, noTrans, cycle(negZero), pick(1, -2, 0, negZero)},
		{SizeOdd, "subnormal-5x6x7", Subnormal, 5, 6, 7, noTrans, pick(minSub, -minSub, maxSub, minNormal, 3e-39), pick(0.5, 1, 2, -0.75, 0x1p-3)},
		{SizeOdd, "underflow-4x5x6", Subnormal, 4, 5, 6, noTrans, pick(1e-20, -3e-21, 2e-30), pick(1e-20, 7e-19, -2e-25)},
		{SizeOdd, "near-overflow-6x5x4", Overflow, 6, 5, 4, noTrans, magnitudes(60, 63), magnitudes(60, 63)},
		{SizeOdd, "near-overflow-trans-b-6x5x4", Overflow, 6, 5, 4, transB, pick(nearSqrtMx, -nearSqrtMx, 1), pick(nearSqrtMx, -nearSqrtMx, 1e19)},
		{SizeOdd, "specials-9x7x8", Specials, 9, 7, 8, noTrans, pick(specials...), pick(specials...)},
		{SizeOdd, "specials-trans-a-8x3x9", Specials, 8, 3, 9, transA, pick(specials...), pick(specials...)},
		{SizeOdd, "sparse-specials-33x65x17", Specials, 33, 65, 17, noTrans, mix(0.02, normal(1), pick(specials...)), mix(0.01, normal(1), pick(specials...))},
	} {
		m, k, n, p, fa, fb := c.m, c.k, c.n, c.p, c.a, c.b
		cases = append(cases, newCase(accel.MatMul, c.size, c.label, c.values, p, func(r *rand.Rand) []Tensor {
			return matmulInputs(fa(r, m*k), fb(r, k*n), m, k, n, p)
		}))
	}
	return cases
}

// matmulInputs names the operands a and b, stored as p says.
func matmulInputs(a, b []float32, m, k, n int, p accel.MatMulParams) []Tensor {
	as, bs := []int{m, k}, []int{k, n}
	if p.TransA {
		as = []int{k, m}
	}
	if p.TransB {
		bs = []int{n, k}
	}
	return []Tensor{{Name: "a", Shape: as, F32: a}, {Name: "b", Shape: bs, F32: b}}
}

// matmulParts recomputes the first row, the last row and a block from the
// middle alone.
func matmulParts(p accel.MatMulParams, in []Tensor) []Part {
	m, k, n, err := accel.MatMulDims(in[0].Shape, in[1].Shape, p)
	if err != nil {
		return nil
	}
	var parts []Part
	for _, rs := range rowSubsets(m) {
		lo, hi := rs[0], rs[1]
		a := in[0]
		a.F32 = rowsOf(a.F32, m, k, p.TransA, lo, hi)
		if p.TransA {
			a.Shape = []int{k, hi - lo}
		} else {
			a.Shape = []int{hi - lo, k}
		}
		parts = append(parts, Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Inputs: []Tensor{a, in[1]}, Offset: lo * n})
	}
	return parts
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

// specMatMul is C[M,N] = A[M,K]·B[K,N]; with p.TransA A is stored as [K,M],
// with p.TransB B is stored as [N,K].
func specMatMul(at, bt Tensor, p accel.MatMulParams) []float32 {
	M, K, N, _ := accel.MatMulDims(at.Shape, bt.Shape, p)
	a, b := at.F32, bt.F32
	A := func(i, k int) float32 {
		if p.TransA {
			return a[k*M+i]
		}
		return a[i*K+k]
	}
	B := func(k, j int) float32 {
		if p.TransB {
			return b[j*K+k]
		}
		return b[k*N+j]
	}
	C := make([]float32, M*N)
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			s := float32(0)
			for k := 0; k < K; k++ {
				s = s + float32(A(i, k)*B(k, j))
			}
			C[i*N+j] = strictmath.Canon(s)
		}
	}
	return C
}

// f64MatMul is matmul in float64: each output a dot product of K exact
// products.
func f64MatMul(at, bt Tensor, p accel.MatMulParams) []ev {
	m, k, n, _ := accel.MatMulDims(at.Shape, bt.Shape, p)
	a, b := at.F32, bt.F32
	aAt := func(i, kk int) float32 {
		if p.TransA {
			return a[kk*m+i]
		}
		return a[i*k+kk]
	}
	bAt := func(kk, j int) float32 {
		if p.TransB {
			return b[j*k+kk]
		}
		return b[kk*n+j]
	}
	c := make([]ev, m*n)
	for i := range m {
		for j := range n {
			var s sum
			for kk := range k {
				s.addProduct(aAt(i, kk), bAt(kk, j))
			}
			c[i*n+j] = s.ev()
		}
	}
	return c
}
