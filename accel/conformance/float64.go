package conformance

// Accuracy against float64.
//
// Each reference value is computed in float64 from the float32 inputs as an
// ev: the value and a bound on how far a float32 evaluation of the same
// expression, in any order of summation, may lie from it. The bound is built
// with the value by the standard first-order rules for rounded arithmetic
// (Higham, Accuracy and Stability of Numerical Algorithms, chapters 2 to 4),
// u = 2^-24 being the unit roundoff of binary32:
//
//   - every float32 result r adds a rounding error of at most u|r|, plus 2^-150
//     (half the subnormal spacing) where it underflows;
//   - a·b carries |a|e_b + |b|e_a + e_a·e_b, a/b carries
//     (e_a + |a/b|·e_b) / (|b| - e_b), a±b carries e_a + e_b;
//   - a sum of n terms t in any order, as a tree or in parallel, carries the
//     terms' errors plus (n-1)·(u·Σ|t| + 2^-150);
//   - exp and log are within one ulp, 2u relative, of the true value.
//
// An output passes when it lies within twice its bound: the factor covers
// the second-order terms the rules drop and the float64 reference's own
// rounding, at most 2^-53 relative per operation. A dot product of K exact
// products, as in matmul and conv2d, so has the bound
// K·u·Σ|a_k·b_k| + (2K-1)·2^-150 (the classic γ_K bound) and passes within
// K·eps·Σ|a_k·b_k| + K·2^-149, eps = 2^-23 being the binary32 machine
// epsilon. add_bias and add pass within one ulp (2u relative) plus 2^-149.
// Relu and maxpool2d are exact: their bound is 0 and the outputs must equal the
// float64 values. The bounds assume binary32 arithmetic throughout: a fast
// backend that multiplies in TF32 or bfloat16 fails them, by design.
//
// Overflow: a float32 evaluation can overflow in an intermediate result where
// float64 does not, for example when the partial sums of a dot product pass
// MaxFloat32 before cancelling. ev.over marks values where that can happen
// (some intermediate magnitude could exceed MaxFloat32·(1-2^-10)); for those
// any NaN or ±Inf output passes, as does a finite output within the bound.
// Everywhere else the float32 and float64 evaluations meet the same
// non-finite values (Inf·0, Inf-Inf and NaN arise from the same inputs), so
// where float64 gives NaN the output must be NaN, and where it gives ±Inf the
// output must be the same infinity.

import (
	"fmt"
	"math"
)

// reference is the float64 reference of a call: each result's values with
// their bounds, in the order of results, and a check of properties the
// bounds do not cover. A result without values (nil) has no element-wise
// bound, and check alone covers it: an i32 output, or a result whose
// float64 value the contract leaves to within an approximation (the
// Barnes-Hut t-SNE step).
type reference struct {
	results [][]ev
	// check, if not nil, describes each way the results got break such a
	// property.
	check func(got []Tensor) []string
}

// ev is a float64 reference value with an error bound for float32.
type ev struct {
	v    float64 // the value, computed in float64
	e    float64 // first-order bound on |float32 evaluation - v|; 0 when v is not finite
	over bool    // a float32 evaluation may overflow where float64 does not
}

const (
	u32       = 0x1p-24 // unit roundoff of binary32
	tiny      = 0x1p-150
	overLimit = math.MaxFloat32 * (1 - 0x1p-10)
)

// finite reports whether x is neither infinite nor NaN (which compares
// false).
func finite(x float64) bool { return math.Abs(x) <= math.MaxFloat64 }

// exact is a float32 input, which has no error.
func exact(x float32) ev { return ev{v: float64(x)} }

// exactAll is the reference of an operation that only moves values: the
// values themselves, without error.
func exactAll(y []float32) reference {
	out := make([]ev, len(y))
	for i, v := range y {
		out[i] = exact(v)
	}
	return reference{results: [][]ev{out}}
}

// rounded is the float32 rounding of v, an operation on inputs that carry
// error e between them.
func rounded(v, e float64, over bool) ev {
	if !finite(v) {
		return ev{v: v, over: over}
	}
	e += u32*math.Abs(v) + tiny
	return ev{v: v, e: e, over: over || math.Abs(v)+e > overLimit}
}

func add(a, b ev) ev { return rounded(a.v+b.v, a.e+b.e, a.over || b.over) }
func sub(a, b ev) ev { return rounded(a.v-b.v, a.e+b.e, a.over || b.over) }

func mul(a, b ev) ev {
	return rounded(a.v*b.v, math.Abs(a.v)*b.e+math.Abs(b.v)*a.e+a.e*b.e, a.over || b.over)
}

func div(a, b ev) ev {
	v := a.v / b.v
	e := math.Inf(1)
	if b.e < math.Abs(b.v) {
		e = (a.e + math.Abs(v)*b.e) / (math.Abs(b.v) - b.e)
	}
	return rounded(v, e, a.over || b.over)
}

// expEv is e**x evaluated by a function within one ulp.
func expEv(x ev) ev {
	v := math.Exp(x.v)
	switch {
	case !finite(v) || !finite(x.v):
		return ev{v: v, over: x.over}
	case x.v < -110:
		// float32 gives +0 for any argument near x.v, even one that
		// overflowed to -Inf.
		return ev{v: v, e: v + tiny}
	}
	e := v*math.Expm1(x.e) + 2*u32*v + 2*tiny
	return ev{v: v, e: e, over: x.over || v+e > overLimit}
}

// logEv is the natural logarithm evaluated by a function within one ulp.
func logEv(x ev) ev {
	v := math.Log(x.v)
	if !finite(v) || !finite(x.v) {
		return ev{v: v, over: x.over}
	}
	e := math.Inf(1)
	if x.e < x.v {
		e = x.e/(x.v-x.e) + 2*u32*math.Abs(v) + 2*tiny
	}
	return ev{v: v, e: e, over: x.over}
}

// hull is a value that may be either a or b, as after a branch on a
// comparison that the error bound cannot decide.
func hull(a, b ev) ev {
	lo := min(a.v-a.e, b.v-b.e)
	hi := max(a.v+a.e, b.v+b.e)
	return ev{v: (lo + hi) / 2, e: (hi - lo) / 2, over: a.over || b.over}
}

// sum accumulates terms in an order the bound does not depend on.
type sum struct {
	v, e float64 // the sum and the terms' errors
	mag  float64 // Σ|t| over the finite terms, which bounds every partial sum
	n    int
	over bool
}

func (s *sum) add(t ev) {
	s.v += t.v
	s.n++
	s.over = s.over || t.over
	if finite(t.v) {
		s.e += t.e
		s.mag += math.Abs(t.v)
	}
}

// addProduct adds the product of two float32 inputs, as add(mul(exact(a),
// exact(b))) does, faster: float64 holds the product exactly, so its only
// error is float32's rounding of it.
func (s *sum) addProduct(a, b float32) {
	p := float64(a) * float64(b)
	s.v += p
	s.n++
	if ap := math.Abs(p); ap <= math.MaxFloat64 {
		e := u32*ap + tiny
		s.e += e
		s.mag += ap
		s.over = s.over || ap+e > overLimit
	}
}

func (s *sum) ev() ev {
	if !finite(s.v) {
		return ev{v: s.v, over: s.over}
	}
	e := s.e + float64(max(s.n-1, 0))*(u32*s.mag+tiny)
	return ev{v: s.v, e: e, over: s.over || s.mag+e > overLimit}
}

// admits reports whether a float32 output is consistent with w.
func (w ev) admits(got float32) bool {
	g := float64(got)
	switch {
	case w.over && !finite(g):
		return true
	case math.IsNaN(w.v):
		return math.IsNaN(g)
	case math.IsInf(w.v, 0):
		return g == w.v
	}
	return finite(g) && math.Abs(g-w.v) <= 2*w.e
}

func (w ev) String() string {
	s := fmt.Sprintf("%.9g ± %.3g (float64)", w.v, 2*w.e)
	if w.over {
		s += ", may overflow in float32"
	}
	return s
}
