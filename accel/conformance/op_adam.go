package conformance

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.AdamParams]{
	op:    accel.Adam,
	cases: adamCases,
	spec: func(p accel.AdamParams, in []Tensor) [][]float32 {
		w, m, v := specAdam(in[0].F32, in[1].F32, in[2].F32, in[3].F32, p)
		return [][]float32{w, m, v}
	},
	float64: func(p accel.AdamParams, in []Tensor) reference {
		w, m, v := f64Adam(in[0].F32, in[1].F32, in[2].F32, in[3].F32, p)
		return reference{results: [][]ev{w, m, v}}
	},
})

// adamAt are the usual hyperparameters at step t, the bias corrections
// computed in float32 as a guest would.
func adamAt(t int) accel.AdamParams {
	c1, c2 := float32(1), float32(1)
	for range t {
		c1 = float32(c1 * 0.9)
		c2 = float32(c2 * 0.999)
	}
	return accel.AdamParams{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Correction1: 1 - c1, Correction2: 1 - c2}
}

func adamCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum, in
	// the weights, the gradient and the moments, on every size class. The
	// second moment is the absolute value of its fill, as in training.
	for _, sh := range []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1}},
		{SizeOdd, []int{7, 13}},
		{SizeTall, []int{50000, 3}},
		{SizeLarge, []int{64, 32, 3, 3}},
	} {
		for _, class := range exactClasses {
			f := elementFill(class)
			v := absolute(f)
			if class == NegZero {
				v = f // -0 too: sqrt(-0) is -0
			}
			cases = append(cases, adamCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, adamAt(3), 0, f, f, f, v))
		}
	}

	// Special values in every tensor, the first step from zero moments,
	// hyperparameters at their edges, a second moment that overflows,
	// cancellation and several steps.
	n := len(specials)
	for _, c := range []struct {
		size, label, values string
		shape               []int
		p                   accel.AdamParams
		steps               int
		w, g, m, v          fill
	}{
		// Each special gradient against each special moment; negative
		// second moments give NaN.
		{SizeOdd, "specials-g-m", Specials, []int{n * n}, adamAt(1), 0, normal(1), eachRepeated(specials, n), cycle(specials...), uniform(0, 1)},
		{SizeOdd, "specials-g-v", Specials, []int{n * n}, adamAt(2), 0, normal(1), eachRepeated(specials, n), uniform(-1, 1), cycle(specials...)},
		{SizeOdd, "specials-w-g", Specials, []int{n * n}, adamAt(5), 0, eachRepeated(specials, n), cycle(specials...), uniform(-1, 1), uniform(0, 1)},
		{SizeTiny, "first-step", Normal, []int{6}, adamAt(1), 0, normal(1), normal(1), cycle(0), cycle(0)},
		// No ε and a zero gradient from zero moments: 0/0 is NaN.
		{SizeOdd, "no-epsilon", NegZero, []int{12}, accel.AdamParams{LearningRate: 0.1, Beta1: 0.5, Beta2: 0.5, Correction1: 1, Correction2: 1},
			0, normal(1), pick(0, negZero, 1), pick(0, negZero), pick(0, negZero)},
		// β = 0: the moments are the gradient and its square; β = 1:
		// they never move.
		{SizeOdd, "beta-zero", Normal, []int{9, 5}, accel.AdamParams{LearningRate: 0.01, Epsilon: 1e-6, Correction1: 1, Correction2: 1}, 0,
			normal(1), normal(1), normal(1), absolute(normal(1))},
		{SizeOdd, "beta-one", Normal, []int{9, 5}, accel.AdamParams{LearningRate: 0.01, Beta1: 1, Beta2: 1, Epsilon: 1e-8, Correction1: 0.5, Correction2: 0.25}, 0,
			normal(1), normal(1), normal(1), absolute(normal(1))},
		// Betas outside [0, 1] and a negative rate: finite, so valid.
		{SizeOdd, "odd-hyperparameters", Normal, []int{23}, accel.AdamParams{LearningRate: -2, Beta1: 1.5, Beta2: -0.5, Epsilon: 1, Correction1: 1e-30, Correction2: 0.5}, 0,
			normal(1), normal(1), normal(1), absolute(normal(1))},
		// g ⊗ g, or v' / c2, overflows: the step is 0, or NaN where m'
		// overflows too.
		{SizeOdd, "overflowing-moments", Overflow, []int{30}, adamAt(1), 0,
			normal(1), magnitudes(60, 127), magnitudes(60, 127), absolute(magnitudes(100, 127))},
		// g ⊗ g underflows.
		{SizeOdd, "subnormal-gradient", Subnormal, []int{30}, adamAt(2), 0, normal(1), subnormals, subnormals, absolute(subnormals)},
		// w - η ⊗ … cancels: w is about the step, below.
		{SizeOdd, "cancel", Cancel, []int{41}, adamAt(4), 0, nil, normal(1), normal(0.1), absolute(normal(0.1))},
		{SizeOdd, "wide", Wide, []int{57}, adamAt(7), 0, magnitudes(-40, 40), magnitudes(-40, 40), magnitudes(-40, 40), absolute(magnitudes(-40, 40))},
		{SizeOdd, "steps-4", Normal, []int{3, 17}, adamAt(1), 4, normal(1), normal(0.1), cycle(0), cycle(0)},
		{SizeTall, "steps-3-long", Normal, []int{100003}, adamAt(100), 3, normal(1), normal(0.1), normal(0.01), absolute(normal(1e-4))},
	} {
		cases = append(cases, adamCase(c.size, c.label, c.values, c.shape, c.p, c.steps, c.w, c.g, c.m, c.v))
	}
	return cases
}

// absolute is f's values made non-negative (NaNs keep their payloads).
func absolute(f fill) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := f(r, n)
		for i := range v {
			v[i] = math.Float32frombits(math.Float32bits(v[i]) &^ (1 << 31))
		}
		return v
	}
}

// adamCase draws w, grad, m and v of one shape. fw nil makes w nearly the
// step that Adam takes, so that the update cancels.
func adamCase(size, label, values string, shape []int, p accel.AdamParams, steps int, fw, fg, fm, fv fill) Case {
	c := newCase(accel.Adam, size, label, values, p, func(r *rand.Rand) []Tensor {
		n := elements(shape)
		g, m, v := fg(r, n), fm(r, n), fv(r, n)
		var w []float32
		if fw != nil {
			w = fw(r, n)
		} else {
			zero := make([]float32, n)
			w, _, _ = specAdam(zero, g, m, v, p) // minus the step
			near := nearOne(r, n)
			for i := range w {
				w[i] = -w[i] * near[i]
			}
		}
		return []Tensor{
			{Name: "w", Shape: slices.Clone(shape), F32: w},
			{Name: "grad", Shape: slices.Clone(shape), F32: g},
			{Name: "m", Shape: slices.Clone(shape), F32: m},
			{Name: "v", Shape: slices.Clone(shape), F32: v},
		}
	})
	c.Steps = steps
	return c
}

// specAdam is one step of adam: it returns the new w, m and v. sqrt is
// IEEE's correctly rounded square root, in Go the float64 root of the
// float32 rounded to float32.
func specAdam(W, grad, M, V []float32, p accel.AdamParams) ([]float32, []float32, []float32) {
	sqrt := func(x float32) float32 { return float32(math.Sqrt(float64(x))) }
	newW := make([]float32, len(W))
	newM := make([]float32, len(W))
	newV := make([]float32, len(W))
	for i := range W {
		g := grad[i]
		m := float32(p.Beta1*M[i]) + float32((1-p.Beta1)*g)
		v := float32(p.Beta2*V[i]) + float32((1-p.Beta2)*float32(g*g))
		d := sqrt(v/p.Correction2) + p.Epsilon
		newW[i] = strictmath.Canon(W[i] - float32(p.LearningRate*((m/p.Correction1)/d)))
		newM[i] = strictmath.Canon(m)
		newV[i] = strictmath.Canon(v)
	}
	return newW, newM, newV
}

// f64Adam is adam in float64. Where the denominator may overflow to +Inf in
// float32 though not in float64 (a huge second moment), float32 takes a
// step of 0 and the reference allows it.
func f64Adam(w, grad, m, v []float32, p accel.AdamParams) ([]ev, []ev, []ev) {
	one := ev{v: 1}
	ob1, ob2 := sub(one, exact(p.Beta1)), sub(one, exact(p.Beta2))
	newW := make([]ev, len(w))
	newM := make([]ev, len(w))
	newV := make([]ev, len(w))
	for i := range w {
		g := exact(grad[i])
		mi := add(mul(exact(p.Beta1), exact(m[i])), mul(ob1, g))
		vi := add(mul(exact(p.Beta2), exact(v[i])), mul(ob2, mul(g, g)))
		d := add(sqrtEv(div(vi, exact(p.Correction2))), exact(p.Epsilon))
		step := div(div(mi, exact(p.Correction1)), d)
		if d.over && finite(step.v) {
			step = hull(step, ev{v: 0})
			step.over = true
		}
		newW[i] = sub(exact(w[i]), mul(exact(p.LearningRate), step))
		newM[i], newV[i] = mi, vi
	}
	return newW, newM, newV
}

// sqrtEv is the correctly rounded square root. Where the sign of x is not
// settled by its bound, float32 may take the root of a negative value:
// the result is then marked as one that may be NaN (over), with a bound
// that covers every root in between.
func sqrtEv(x ev) ev {
	switch {
	case !finite(x.v):
		return ev{v: math.Sqrt(x.v), over: x.over}
	case x.v+2*x.e < 0:
		return ev{v: math.NaN()}
	case x.v-2*x.e <= 0:
		hi := math.Sqrt(max(x.v, 0) + 2*x.e)
		return ev{v: hi / 2, e: hi/2 + tiny, over: true}
	}
	v := math.Sqrt(x.v)
	// |√(x+δ) - √x| = |δ| / (√(x+δ) + √x), at most |δ|/√x and √|δ|.
	return rounded(v, min(x.e/v, math.Sqrt(x.e)), x.over)
}
