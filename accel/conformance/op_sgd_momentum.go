package conformance

import (
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.SGDParams]{
	op:    accel.SGDMomentum,
	cases: sgdCases,
	spec: func(p accel.SGDParams, in []Tensor) [][]float32 {
		w, velocity := specSGDMomentum(in[0].F32, in[1].F32, in[2].F32, p)
		return [][]float32{w, velocity}
	},
	float64: func(p accel.SGDParams, in []Tensor) reference {
		w, velocity := f64SGDMomentum(in[0].F32, in[1].F32, in[2].F32, p)
		return reference{results: [][]ev{w, velocity}}
	},
})

// sgdTypical are the hyperparameters of most cases.
var sgdTypical = accel.SGDParams{LearningRate: 0.01, Momentum: 0.9}

func sgdCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum, in
	// the weights, the gradient and the velocity, on every size class.
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
			cases = append(cases, sgdCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, sgdTypical, 0, f, f, f))
		}
	}

	// Every triple of special values, signed zeros, no momentum (0 ⊗ Inf
	// is NaN), unusual hyperparameters, cancellation and several steps.
	n := len(specials)
	for _, c := range []struct {
		size, label, values string
		shape               []int
		p                   accel.SGDParams
		steps               int
		w, g, v             fill
	}{
		{SizeOdd, "specials-triples", Specials, []int{n * n * n}, sgdTypical, 0,
			eachRepeated(specials, n*n), eachRepeated(specials, n), cycle(specials...)},
		{SizeOdd, "specials-triples-no-momentum", Specials, []int{n * n * n}, accel.SGDParams{LearningRate: 0.5}, 0,
			eachRepeated(specials, n*n), eachRepeated(specials, n), cycle(specials...)},
		// -0 ⊗ μ + -0 is -0; w - η ⊗ (-0) keeps w's zero only if it is +0.
		{SizeTiny, "signed-zeros", NegZero, []int{8}, sgdTypical, 0,
			eachRepeated([]float32{negZero, 0}, 4), eachRepeated([]float32{negZero, 0}, 2), cycle(negZero, 0)},
		{SizeTiny, "signed-zeros-no-momentum", NegZero, []int{8}, accel.SGDParams{LearningRate: 1}, 0,
			eachRepeated([]float32{negZero, 0}, 4), eachRepeated([]float32{negZero, 0}, 2), cycle(negZero, 0)},
		{SizeOdd, "no-momentum", Normal, []int{5, 11}, accel.SGDParams{LearningRate: 0.1}, 0, normal(1), normal(1), normal(1)},
		{SizeOdd, "ascent-heavy-momentum", Normal, []int{33}, accel.SGDParams{LearningRate: -3, Momentum: 1.5}, 0, normal(1), normal(1), normal(1)},
		{SizeOdd, "zero-rate", Heavy, []int{33}, accel.SGDParams{Momentum: 0.5}, 0, cauchy(1), cauchy(1), cauchy(1)},
		{SizeOdd, "subnormal-rate", Subnormal, []int{33}, accel.SGDParams{LearningRate: minSub, Momentum: maxSub}, 0, subnormals, subnormals, subnormals},
		{SizeOdd, "overflow", Overflow, []int{6, 6}, accel.SGDParams{LearningRate: 1e30, Momentum: 2}, 0,
			pick(maxFloat, -maxFloat, 1e38, 0), pick(maxFloat, 3e38, -1e38), pick(maxFloat, -3e38, 1e38, 1)},
		// w - η ⊗ v cancels: w is about η ⊗ v, below.
		{SizeOdd, "cancel", Cancel, []int{41}, sgdTypical, 0, nil, normal(1), normal(1)},
		{SizeOdd, "steps-5", Normal, []int{3, 17}, sgdTypical, 5, normal(1), normal(0.1), cycle(0)},
		{SizeTall, "steps-3-long", Normal, []int{100003}, sgdTypical, 3, normal(1), normal(0.1), normal(0.1)},
		{SizeOdd, "wide", Wide, []int{57}, sgdTypical, 0, magnitudes(-40, 40), magnitudes(-40, 40), magnitudes(-40, 40)},
	} {
		cases = append(cases, sgdCase(c.size, c.label, c.values, c.shape, c.p, c.steps, c.w, c.g, c.v))
	}
	return cases
}

// sgdCase draws w, grad and velocity of one shape. fw nil makes w nearly
// η ⊗ v, so that the update cancels.
func sgdCase(size, label, values string, shape []int, p accel.SGDParams, steps int, fw, fg, fv fill) Case {
	c := newCase(accel.SGDMomentum, size, label, values, p, func(r *rand.Rand) []Tensor {
		n := elements(shape)
		g, vel := fg(r, n), fv(r, n)
		var w []float32
		if fw != nil {
			w = fw(r, n)
		} else {
			w = nearOne(r, n)
			for i := range w {
				w[i] *= float32(p.LearningRate * (float32(p.Momentum*vel[i]) + g[i]))
			}
		}
		return []Tensor{
			{Name: "w", Shape: slices.Clone(shape), F32: w},
			{Name: "grad", Shape: slices.Clone(shape), F32: g},
			{Name: "velocity", Shape: slices.Clone(shape), F32: vel},
		}
	})
	c.Steps = steps
	return c
}

// specSGDMomentum is one step of sgd_momentum: it returns the new w and
// velocity.
func specSGDMomentum(W, grad, velocity []float32, p accel.SGDParams) ([]float32, []float32) {
	newW := make([]float32, len(W))
	newVelocity := make([]float32, len(W))
	for i := range W {
		v := float32(p.Momentum*velocity[i]) + grad[i]
		newVelocity[i] = strictmath.Canon(v)
		newW[i] = strictmath.Canon(W[i] - float32(p.LearningRate*v))
	}
	return newW, newVelocity
}

// f64SGDMomentum is sgd_momentum in float64.
func f64SGDMomentum(w, g, velocity []float32, p accel.SGDParams) ([]ev, []ev) {
	newW := make([]ev, len(w))
	newVelocity := make([]ev, len(w))
	for i := range w {
		v := add(mul(exact(p.Momentum), exact(velocity[i])), exact(g[i]))
		newVelocity[i] = v
		newW[i] = sub(exact(w[i]), mul(exact(p.LearningRate), v))
	}
	return newW, newVelocity
}
