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
// epsilon. add_bias passes within one ulp (2u relative) plus 2^-149. Relu and
// maxpool2d are exact: their bound is 0 and the outputs must equal the
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

	"github.com/accelnode/accelnode/accel"
)

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

func finite(x float64) bool { return !math.IsInf(x, 0) && !math.IsNaN(x) }

// exact is a float32 input, which has no error.
func exact(x float32) ev { return ev{v: float64(x)} }

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

// f64MatMul is matmul in float64; a and b are stored as p says.
func f64MatMul(a, b []float32, m, k, n int, p accel.MatMulParams) []ev {
	at := func(i, kk int) float32 {
		if p.TransA {
			return a[kk*m+i]
		}
		return a[i*k+kk]
	}
	bt := func(kk, j int) float32 {
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
				s.add(mul(exact(at(i, kk)), exact(bt(kk, j))))
			}
			c[i*n+j] = s.ev()
		}
	}
	return c
}

// f64Conv2D is conv2d in float64; bias may be nil.
func f64Conv2D(x []float32, xs []int, w []float32, ws []int, bias []float32, p accel.Conv2DParams) []ev {
	ys := convShape(xs, ws, p)
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, CG, KH, KW := ws[0], ws[1], ws[2], ws[3]
	OH, OW := ys[2], ys[3]
	y := make([]ev, 0, N*OC*OH*OW)
	for n := range N {
		for oc := range OC {
			g := oc / (OC / p.Groups)
			for oh := range OH {
				for ow := range OW {
					var s sum
					for c := range CG {
						for kh := range KH {
							for kw := range KW {
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if ih >= 0 && ih < H && iw >= 0 && iw < W {
									xv := x[((n*C+g*CG+c)*H+ih)*W+iw]
									s.add(mul(exact(xv), exact(w[((oc*CG+c)*KH+kh)*KW+kw])))
								}
							}
						}
					}
					r := s.ev()
					if bias != nil {
						r = add(r, exact(bias[oc]))
					}
					y = append(y, r)
				}
			}
		}
	}
	return y
}

// f64AddBias is add_bias in float64.
func f64AddBias(x []float32, shape []int, bias []float32, axis int) []ev {
	inner := 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	y := make([]ev, len(x))
	for i := range x {
		y[i] = add(exact(x[i]), exact(bias[i/inner%shape[axis]]))
	}
	return y
}

// f64Relu is relu in float64, which is exact.
func f64Relu(x []float32) []ev {
	y := make([]ev, len(x))
	for i, v := range x {
		switch {
		case math.IsNaN(float64(v)):
			y[i] = ev{v: math.NaN()}
		case v > 0:
			y[i] = exact(v)
		default:
			y[i] = ev{v: 0}
		}
	}
	return y
}

// f64MaxPool2D is maxpool2d in float64, which is exact: NaN if the window
// holds one, else its largest value.
func f64MaxPool2D(x []float32, xs []int, p accel.Pool2DParams) []ev {
	ys := poolShape(xs, p)
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	y := make([]ev, 0, ys[0]*ys[1]*ys[2]*ys[3])
	for n := range N {
		for c := range C {
			for oh := range ys[2] {
				for ow := range ys[3] {
					m := math.Inf(-1)
					for kh := range p.KernelH {
						for kw := range p.KernelW {
							ih := oh*p.StrideH - p.PadTop + kh
							iw := ow*p.StrideW - p.PadLeft + kw
							if ih >= 0 && ih < H && iw >= 0 && iw < W {
								v := float64(x[((n*C+c)*H+ih)*W+iw])
								if math.IsNaN(v) || v > m {
									m = v
								}
								if math.IsNaN(m) {
									break
								}
							}
						}
					}
					y = append(y, ev{v: m})
				}
			}
		}
	}
	return y
}

// f64Softmax is softmax over the last axis of length l in float64.
func f64Softmax(x []float32, l int) []ev {
	y := make([]ev, len(x))
	for r := 0; r < len(x); r += l {
		row := x[r : r+l]
		m := math.Inf(-1)
		for _, v := range row {
			if v != v || float64(v) > m {
				m = float64(v)
			}
			if math.IsNaN(m) {
				break
			}
		}
		e := make([]ev, l)
		var s sum
		for i, v := range row {
			e[i] = expEv(sub(exact(v), ev{v: m}))
			s.add(e[i])
		}
		total := s.ev()
		for i := range row {
			y[r+i] = div(e[i], total)
		}
	}
	return y
}

// tsneRef is one t-SNE iteration in float64.
type tsneRef struct {
	y, u, g []ev // the new embedding, update and gains, [N,2] row-major
	kl      ev   // valid when asked for
	// mag[d] is Σ|y[i,d]| over the points before re-centring, which bounds
	// how far from 0 the float32 column sums of the new embedding may be.
	mag [2]float64
}

// f64TSNEStep is tsne_step in float64. Where the float64 gradient is within
// its error bound of 0, float32 may take either branch of the gains rule and
// the reference allows both.
func f64TSNEStep(rowPtr, cols []int32, vals, y, u, g []float32, p accel.TSNEParams) tsneRef {
	n := len(y) / 2
	kernel := func(i, j int) (dx, dy, q ev) {
		dx = sub(exact(y[2*i]), exact(y[2*j]))
		dy = sub(exact(y[2*i+1]), exact(y[2*j+1]))
		d2 := add(mul(dx, dx), mul(dy, dy))
		one := ev{v: 1}
		return dx, dy, div(one, add(one, d2))
	}

	var zs sum
	rep := make([][2]ev, n)
	for i := range n {
		var z, rx, ry sum
		for j := range n {
			if j == i {
				continue
			}
			dx, dy, q := kernel(i, j)
			z.add(q)
			q2 := mul(q, q)
			rx.add(mul(q2, dx))
			ry.add(mul(q2, dy))
		}
		zs.add(z.ev())
		rep[i] = [2]ev{rx.ev(), ry.ev()}
	}
	Z := zs.ev()

	var ref tsneRef
	ref.u = make([]ev, 2*n)
	ref.g = make([]ev, 2*n)
	moved := make([]ev, 2*n)
	var cols2 [2]sum
	for i := range n {
		var ax, ay sum
		for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
			dx, dy, q := kernel(i, int(cols[e]))
			pq := mul(exact(vals[e]), q)
			ax.add(mul(pq, dx))
			ay.add(mul(pq, dy))
		}
		att := [2]ev{ax.ev(), ay.ev()}
		for d := range 2 {
			k := 2*i + d
			grad := mul(ev{v: 4}, sub(mul(exact(p.Exaggeration), att[d]), div(rep[i][d], Z)))
			grow := add(exact(g[k]), exact(0.2))
			shrink := mul(exact(g[k]), exact(0.8))
			var h ev
			switch {
			case math.Abs(grad.v) <= 2*grad.e: // sign undecided
				h = hull(grow, shrink)
			case (grad.v > 0) != (u[k] > 0):
				h = grow
			default:
				h = shrink
			}
			h.v = max(h.v, float64(p.MinGain)) // max is 1-Lipschitz: the bound stands
			uk := sub(mul(exact(p.Momentum), exact(u[k])), mul(exact(p.LearningRate), mul(h, grad)))
			ref.g[k], ref.u[k] = h, uk
			moved[k] = add(exact(y[k]), uk)
			cols2[d].add(moved[k])
			ref.mag[d] += math.Abs(moved[k].v)
		}
	}
	ref.y = make([]ev, 2*n)
	for d := range 2 {
		mean := div(cols2[d].ev(), ev{v: float64(n)})
		for i := range n {
			ref.y[2*i+d] = sub(moved[2*i+d], mean)
		}
	}

	if p.ComputeKL {
		var kl sum
		for i := range n {
			var ki sum
			for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
				pv := exact(vals[e])
				if vals[e] > 0 && int(cols[e]) != i {
					_, _, q := kernel(i, int(cols[e]))
					ki.add(mul(pv, logEv(div(mul(pv, Z), q))))
				}
			}
			kl.add(ki.ev())
		}
		ref.kl = kl.ev()
	}
	return ref
}
