package conformance

import (
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.UnaryParams]{
	op:    accel.Unary,
	cases: unaryCases,
	spec: func(p accel.UnaryParams, in []Tensor) [][]float32 {
		return [][]float32{specUnary(in[0].F32, p)}
	},
	float64: func(p accel.UnaryParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Unary(in[0].F32, p)}}
	},
	// Elementwise: rows along the first axis, as add's.
	parts: func(_ accel.UnaryParams, in []Tensor) []Part { return addParts(accel.NoParams{}, in) },
})

// unaryFuncs are the functions with the parameters the cases use: ONNX's
// defaults for LeakyRelu (0.01) and HardSigmoid (0.2, 0.5), and
// hard_sigmoid at hard_swish's own parameters.
var unaryFuncs = []struct {
	label string
	p     accel.UnaryParams
}{
	{"abs", accel.UnaryParams{Func: accel.UnaryAbs}},
	{"neg", accel.UnaryParams{Func: accel.UnaryNeg}},
	{"sqrt", accel.UnaryParams{Func: accel.UnarySqrt}},
	{"reciprocal", accel.UnaryParams{Func: accel.UnaryReciprocal}},
	{"leaky_relu", accel.UnaryParams{Func: accel.UnaryLeakyRelu, Alpha: 0.01}},
	{"hard_sigmoid", accel.UnaryParams{Func: accel.UnaryHardSigmoid, Alpha: 0.2, Beta: 0.5}},
	{"hard_sigmoid-sixth", accel.UnaryParams{Func: accel.UnaryHardSigmoid, Alpha: accel.HardSwishAlpha, Beta: 0.5}},
	{"hard_swish", accel.UnaryParams{Func: accel.UnaryHardSwish}},
	{"exp", accel.UnaryParams{Func: accel.UnaryExp}},
	{"log", accel.UnaryParams{Func: accel.UnaryLog}},
	{"tanh", accel.UnaryParams{Func: accel.UnaryTanh}},
	{"sigmoid", accel.UnaryParams{Func: accel.UnarySigmoid}},
	{"erf", accel.UnaryParams{Func: accel.UnaryErf}},
}

func unaryCases() []Case {
	var cases []Case
	for _, f := range unaryFuncs {
		// Every special value, once each; then a mix of normal values and
		// specials, long enough to be split into parts.
		cases = append(cases,
			unaryFnCase(SizeOdd, f.label+"-each-special", Specials, []int{len(specials)}, f.p, cycle(specials...)),
			unaryFnCase(SizeOdd, f.label+"-normal", Normal, []int{9, 31}, f.p, normal(4)),
			unaryFnCase(SizeOdd, f.label+"-subnormal", Subnormal, []int{33}, f.p,
				pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal, 0, negZero)),
			unaryFnCase(SizeTall, f.label+"-long-70001", Specials, []int{70001}, f.p, mix(0.01, normal(6), pick(specials...))),
		)
	}
	// The grid for the functions whose rounding is least simple.
	for _, f := range unaryFuncs {
		if f.p.Func != accel.UnaryHardSwish && f.p.Func != accel.UnaryExp && f.p.Func != accel.UnaryTanh {
			continue
		}
		for _, sh := range elementwiseSizes {
			for _, class := range exactClasses {
				cases = append(cases, unaryFnCase(sh.size, f.label+"-"+sh.size+"-"+dims(sh.shape...), class, sh.shape, f.p, elementFill(class)))
			}
		}
	}
	// The edges of hard_sigmoid: where alpha·x + beta meets 0 and 1.
	edges := []float32{-2.5, -2.4999998, -2.5000002, 2.5, 2.4999998, 2.5000002, -3, 3, -2.9999998, 2.9999998}
	cases = append(cases,
		unaryFnCase(SizeTiny, "hard_sigmoid-edges", Normal, []int{len(edges)}, unaryFuncs[5].p, cycle(edges...)),
		unaryFnCase(SizeTiny, "hard_swish-edges", Normal, []int{len(edges)}, unaryFuncs[7].p, cycle(edges...)),
	)
	return cases
}

func unaryFnCase(size, label, values string, shape []int, p accel.UnaryParams, fx fill) Case {
	return newCase(accel.Unary, size, label, values, p, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
	})
}

// specUnary is y = canon(f(x)) as the contract writes each function.
func specUnary(X []float32, p accel.UnaryParams) []float32 {
	hardSigmoid := func(x, alpha, beta float32) float32 {
		t := float32(alpha*x) + beta
		if t > 1 {
			return 1
		}
		if t > 0 || t != t {
			return t
		}
		return 0
	}
	Y := make([]float32, len(X))
	for i, x := range X {
		var y float32
		switch p.Func {
		case accel.UnaryAbs:
			y = math.Float32frombits(math.Float32bits(x) & 0x7fffffff)
		case accel.UnaryNeg:
			y = math.Float32frombits(math.Float32bits(x) ^ 0x80000000)
		case accel.UnarySqrt:
			y = float32(math.Sqrt(float64(x)))
		case accel.UnaryReciprocal:
			y = 1 / x
		case accel.UnaryLeakyRelu:
			y = x
			if !(x >= 0) {
				y = p.Alpha * x
			}
		case accel.UnaryHardSigmoid:
			y = hardSigmoid(x, p.Alpha, p.Beta)
		case accel.UnaryHardSwish:
			y = x * hardSigmoid(x, accel.HardSwishAlpha, 0.5)
		case accel.UnaryExp:
			y = strictmath.Exp(x)
		case accel.UnaryLog:
			y = strictmath.Log(x)
		case accel.UnaryTanh:
			y = strictmath.Tanh(x)
		case accel.UnarySigmoid:
			y = strictmath.Sigmoid(x)
		case accel.UnaryErf:
			y = strictmath.Erf(x)
		}
		Y[i] = strictmath.Canon(y)
	}
	return Y
}

// f64Unary is each function in float64 with the bound of its float32
// roundings.
func f64Unary(X []float32, p accel.UnaryParams) []ev {
	// hardSigmoid clamps alpha·x + beta, two roundings; the clamp does not
	// widen the bound.
	hardSigmoid := func(x float32, alpha, beta float32) ev {
		t := add(mul(exact(alpha), exact(x)), exact(beta))
		if t.v != t.v {
			return t
		}
		return ev{v: math.Min(math.Max(t.v, 0), 1), e: t.e, over: t.over}
	}
	Y := make([]ev, len(X))
	for i, x := range X {
		f := float64(x)
		switch p.Func {
		case accel.UnaryAbs:
			Y[i] = ev{v: math.Abs(f)}
		case accel.UnaryNeg:
			Y[i] = ev{v: -f}
		case accel.UnarySqrt:
			Y[i] = rounded(math.Sqrt(f), 0, false)
		case accel.UnaryReciprocal:
			Y[i] = div(exact(1), exact(x))
		case accel.UnaryLeakyRelu:
			Y[i] = exact(x)
			if !(x >= 0) {
				Y[i] = mul(exact(p.Alpha), exact(x))
			}
		case accel.UnaryHardSigmoid:
			Y[i] = hardSigmoid(x, p.Alpha, p.Beta)
		case accel.UnaryHardSwish:
			Y[i] = mul(exact(x), hardSigmoid(x, accel.HardSwishAlpha, 0.5))
		case accel.UnaryExp:
			Y[i] = expEv(exact(x))
		case accel.UnaryLog:
			Y[i] = logEv(exact(x))
		case accel.UnaryTanh:
			Y[i] = within(math.Tanh(f), 2.5)
		case accel.UnarySigmoid:
			Y[i] = within(1/(1+math.Exp(-f)), 2.5)
		case accel.UnaryErf:
			Y[i] = within(math.Erf(f), 1)
		}
	}
	return Y
}

// within is a function of an exact input whose float32 evaluation lies
// within ulps ulp of the true value v: the measured worst of the
// contract's tanh, sigmoid and erf over every float32 (accel/strictmath).
// An ulp is at most 2u·|v|, and a subnormal step 2^-149.
func within(v, ulps float64) ev {
	if !finite(v) {
		return ev{v: v}
	}
	return ev{v: v, e: ulps * (2*u32*math.Abs(v) + 2*tiny)}
}
