package conformance

import (
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
)

// The input generators of the drivers, for other test suites (the
// conformance runner of accel/conformance/runner) that want the same data.

// Fill makes n input values from r.
type Fill func(r *rand.Rand, n int) []float32

// Uniform draws from [lo, hi).
func Uniform(lo, hi float32) Fill { return Fill(uniform(lo, hi)) }

// Normal draws from a normal distribution with mean 0.
func Normal(sigma float64) Fill { return Fill(normal(sigma)) }

// Magnitudes draws values of random sign whose binary exponents are uniform
// in [lo, hi], so that sums of them round and cancel.
func Magnitudes(lo, hi int) Fill { return Fill(magnitudes(lo, hi)) }

// Pick draws each value from vals.
func Pick(vals ...float32) Fill { return Fill(pick(vals...)) }

// Cycle repeats vals in order.
func Cycle(vals ...float32) Fill { return Fill(cycle(vals...)) }

// Mix takes each value from other with probability p, else from base.
func Mix(p float64, base, other Fill) Fill { return Fill(mix(p, fill(base), fill(other))) }

// Specials returns the pool of special values every operation must handle:
// NaNs with odd payloads and signs, ±Inf, ±0, subnormals, the largest
// floats and values whose squares are near overflow.
func Specials() []float32 { return slices.Clone(specials) }

// Rand returns the generator the drivers use for a case: seeded by its name,
// so that every run sees the same data.
func Rand(name string) *rand.Rand { return rng(name) }

// RandomP builds a sparse t-SNE P of n points in CSR form as the tsne_step
// driver does: each point draws k neighbours, weights are symmetrised and
// normalised to sum 1, rows are stored in random order and every 37th point
// has no neighbours. With zeros, every 5th row also stores an entry of value
// 0; with diag, every 7th row stores an entry (i, i).
func RandomP(r *rand.Rand, n, k int, zeros, diag bool) (rowPtr, cols []int32, vals []float32) {
	P := randomP(k, zeros, diag)(r, n)
	return P.rowPtr, P.cols, P.vals
}

// PairP is the P of two points: each is the other's only neighbour, with
// probability 0.5.
func PairP() (rowPtr, cols []int32, vals []float32) {
	P := pairP(nil, 2)
	return P.rowPtr, P.cols, P.vals
}

// The contract's transcription (spec.go), for suites that want the
// contract's bits without trusting any backend. Each is single-threaded and
// slow; inputs are never modified.

// SpecMatMul is C[M,N] = A[M,K]·B[K,N]; with p.TransA A is stored as [K,M],
// with p.TransB B is stored as [N,K].
func SpecMatMul(a, b []float32, m, k, n int, p accel.MatMulParams) []float32 {
	return specMatMul(a, b, m, k, n, p)
}

// SpecConv2D is conv2d of x [N,C,H,W] with weights w [OC,C/G,KH,KW] and an
// optional bias (nil for none). Strides, dilations and groups must be at
// least 1.
func SpecConv2D(x []float32, xs []int, w []float32, ws []int, bias []float32, p accel.Conv2DParams) []float32 {
	return specConv2D(x, xs, w, ws, bias, p)
}

// SpecAddBias is x + bias broadcast along axis.
func SpecAddBias(x []float32, shape []int, bias []float32, axis int) []float32 {
	return specAddBias(x, shape, bias, axis)
}

// SpecRelu is relu of x.
func SpecRelu(x []float32) []float32 { return specRelu(x) }

// SpecMaxPool2D is maxpool2d of x [N,C,H,W].
func SpecMaxPool2D(x []float32, xs []int, p accel.Pool2DParams) []float32 {
	return specMaxPool2D(x, xs, p)
}

// SpecSoftmax is softmax over rows of length l.
func SpecSoftmax(x []float32, l int) []float32 { return specSoftmax(x, l) }

// SpecTSNEStep is one tsne_step from the embedding y, update u and gains g
// ([N,2] row-major) with P in CSR form; it returns the new state and the KL
// divergence (0 without p.ComputeKL).
func SpecTSNEStep(rowPtr, cols []int32, vals, y, u, g []float32, p accel.TSNEParams) (newY, newU, newG []float32, kl float32) {
	return specTSNEStep(rowPtr, cols, vals, y, u, g, p)
}

// RowSubsets lists the row ranges [lo, hi) of an M-row product that batch
// invariance recomputes alone: the first row, the last and a middle block.
func RowSubsets(m int) [][2]int { return rowSubsets(m) }

// RowsOf returns rows lo..hi-1 of op(A), stored as a is: A is [M,K], or
// [K,M] when transposed.
func RowsOf(a []float32, m, k int, trans bool, lo, hi int) []float32 {
	return rowsOf(a, m, k, trans, lo, hi)
}
