package accel

import "math"

// Compute units meter what a client asks of the node. They are counted from
// shapes alone, never from time, so every replica charges the same: one unit
// per floating-point operation and one per byte moved, plus CallUnits for the
// call itself. docs/abi.md lists the formula of every call.
const (
	// CallUnits is charged for every call that touches a tensor.
	CallUnits = 64
	// SoftmaxUnitsPerElement counts max, subtract, exp (about a dozen
	// operations), sum and divide.
	SoftmaxUnitsPerElement = 16
	// tsnePairUnits counts one repulsive pair: two differences, a squared
	// distance, a reciprocal and three accumulations.
	tsnePairUnits = 20
	// tsneEdgeUnits counts one attractive edge; the same again for its KL term.
	tsneEdgeUnits = 20
	// tsnePointUnits counts the gradient, gains, update and centring of a point.
	tsnePointUnits = 40
)

// MatMulUnits is the cost of an [M,K]·[K,N] product.
func MatMulUnits(m, k, n int) uint64 {
	M, K, N := uint64(m), uint64(k), uint64(n)
	return CallUnits + 2*M*N*K + 4*(M*K+K*N+M*N)
}

// Conv2DUnits is the cost of a convolution from its input, weight and output
// shapes. Padding positions are counted as if computed, so the cost depends on
// shapes alone.
func Conv2DUnits(x, w, out []int, bias bool) uint64 {
	outElems := uint64(out[0]) * uint64(out[1]) * uint64(out[2]) * uint64(out[3])
	perOutput := uint64(w[1]) * uint64(w[2]) * uint64(w[3])
	bytes := 4 * (product(x) + product(w) + outElems)
	units := CallUnits + 2*outElems*perOutput + bytes
	if bias {
		units += outElems + 4*uint64(out[1])
	}
	return units
}

// Pool2DUnits is the cost of a max-pool from its input and output shapes:
// every window position is counted, as if none were padding. The product
// saturates rather than wrap, so a window too large to pay for is refused by
// any budget.
func Pool2DUnits(x, out []int, p Pool2DParams) uint64 {
	outElems := product(out)
	window := mulSat(uint64(p.KernelH), uint64(p.KernelW))
	return addSat(CallUnits+4*(product(x)+outElems), mulSat(outElems, window))
}

func mulSat(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// TSNEUnits is the cost of one exact t-SNE iteration over n points and nnz
// nonzeros of P.
func TSNEUnits(n, nnz int, kl bool) uint64 {
	N, E := uint64(n), uint64(nnz)
	units := CallUnits + tsnePairUnits*N*(N-1) + tsneEdgeUnits*E + tsnePointUnits*N
	units += 4*(N+1) + 8*E + 3*2*2*4*N // read P; read and write Y, update and gains
	if kl {
		units += tsneEdgeUnits * E
	}
	return units
}

func product(shape []int) uint64 {
	p := uint64(1)
	for _, d := range shape {
		p *= uint64(d)
	}
	return p
}
