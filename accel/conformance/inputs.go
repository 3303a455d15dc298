package conformance

import (
	"math"
	"math/rand/v2"
)

// Special float32 values. Negative zero and NaNs are built from bits: Go
// constant arithmetic has neither.
var (
	negZero    = math.Float32frombits(0x80000000)
	posInf     = float32(math.Inf(1))
	negInf     = float32(math.Inf(-1))
	qNaN       = math.Float32frombits(0x7fc00000) // canonical
	negNaN     = math.Float32frombits(0xffc00001) // negative, with a payload
	sNaN       = math.Float32frombits(0x7f800001) // signalling
	minSub     = math.Float32frombits(0x00000001) // smallest subnormal, 2^-149
	maxSub     = math.Float32frombits(0x007fffff) // largest subnormal
	minNormal  = math.Float32frombits(0x00800000) // 2^-126
	maxFloat   = float32(math.MaxFloat32)
	nearSqrtMx = float32(1.8e19) // its square is near MaxFloat32
)

// specials is a pool of the values every operation must handle.
var specials = []float32{
	qNaN, negNaN, sNaN, posInf, negInf, 0, negZero, 1, -1, 0.5, -3,
	minSub, -minSub, maxSub, minNormal, -minNormal,
	maxFloat, -maxFloat, nearSqrtMx, -nearSqrtMx, 3e-20,
}

// A fill makes n input values.
type fill func(r *rand.Rand, n int) []float32

// uniform draws from [lo, hi).
func uniform(lo, hi float32) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = lo + (hi-lo)*r.Float32()
		}
		return v
	}
}

// normal draws from a normal distribution with mean 0.
func normal(sigma float64) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(sigma * r.NormFloat64())
		}
		return v
	}
}

// magnitudes draws values of random sign whose binary exponents are uniform
// in [lo, hi], so that sums of them round and cancel.
func magnitudes(lo, hi int) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			x := float32(math.Ldexp(1+r.Float64(), lo+r.IntN(hi-lo+1)))
			if r.IntN(2) == 0 {
				x = -x
			}
			v[i] = x
		}
		return v
	}
}

// pick draws each value from vals.
func pick(vals ...float32) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = vals[r.IntN(len(vals))]
		}
		return v
	}
}

// cycle repeats vals in order.
func cycle(vals ...float32) fill {
	return func(_ *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = vals[i%len(vals)]
		}
		return v
	}
}

// mix takes each value from other with probability p, else from base.
func mix(p float64, base, other fill) fill {
	return func(r *rand.Rand, n int) []float32 {
		v, o := base(r, n), other(r, n)
		for i := range v {
			if r.Float64() < p {
				v[i] = o[i]
			}
		}
		return v
	}
}

// rows lays out rows of one length as a matrix, row after row.
func rows(rs ...[]float32) []float32 {
	var v []float32
	for _, r := range rs {
		if len(r) != len(rs[0]) {
			panic("conformance: rows of different lengths")
		}
		v = append(v, r...)
	}
	return v
}
