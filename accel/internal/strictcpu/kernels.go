package strictcpu

// kernels is one level of the inner loops: the portable Go code, or
// hand-written SIMD for an instruction set. Every level computes the same
// bits. A vector lane owns one output element and takes its products in the
// contract's order, each product rounded before it is added (a multiply, then
// an add: never a fused multiply-add), so vectorising across outputs changes
// which outputs are worked on together, never the order of one output's sum.
type kernels struct {
	name string

	// micro, when not nil, is the matmul micro-kernel: it adds to the mr x
	// nr block of C at c (rows ldc elements apart) the products of a packed
	// panel of A, a[kk*mr+r] = A[i+r, k0+kk], and a packed panel of B,
	// b[kk*nr+j] = B[k0+kk, j+jj], for kk = 0 … kc-1 in that order. kc >= 1.
	micro  func(a, b, c *float32, kc, ldc int)
	mr, nr int
	// kc is the depth of one block of k; tileRows and tileCols are the
	// size of one work item of C, multiples of mr and nr.
	kc, tileRows, tileCols int

	// taps, when not nil, computes for every i of y the sum of the
	// products x[i + c*cs + r*rs + t*dil] · w[(c*kh + r)*kw + t] for
	// c = 0 … nc-1, r = 0 … kh-1 and t = 0 … kw-1 in that order: with
	// tapsAdd it adds them to y[i]; with tapsOut it sets y[i] to the
	// canonicalised sum from +0, and with tapsOutBias to the canonicalised
	// sum from +0 plus b, added last. y is not empty; kw, kh, nc >= 1.
	taps func(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, mode tapsMode, b float32)
	// axpy, when not nil, adds x[i]·w to y[i] for every i of y.
	axpy func(y, x []float32, w float32)
}

// tapsMode says what kernels.taps does with its sums.
type tapsMode int

const (
	tapsAdd     tapsMode = iota // add them to y
	tapsOut                     // store them, canonicalised
	tapsOutBias                 // store them plus the bias, canonicalised
)

// scalarKernels is the portable Go code, the fallback on every CPU.
var scalarKernels = &kernels{name: "scalar"}

// kernelLevels are the levels this CPU runs, fastest first; the last is
// always scalarKernels. New uses the first. Tests run every one.
var kernelLevels = append(archKernels(), scalarKernels)

// allKernelNames names every level this architecture has code for, fastest
// first, whether this CPU runs it or not.
var allKernelNames = func() []string {
	var names []string
	for _, k := range archAllKernels() {
		names = append(names, k.name)
	}
	return append(names, scalarKernels.name)
}()

// checkTaps panics unless x and w hold every element that taps over y reads,
// so that a wrong caller is a caught panic, not a read out of bounds in the
// assembly.
func checkTaps(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, mode tapsMode) {
	if len(y) == 0 || kw < 1 || kh < 1 || nc < 1 || dil < 0 || rs < 0 || cs < 0 || mode < tapsAdd || mode > tapsOutBias ||
		len(w) < nc*kh*kw || len(x) <= (nc-1)*cs+(kh-1)*rs+(kw-1)*dil+len(y)-1 {
		panic("strictcpu: taps out of bounds")
	}
}
