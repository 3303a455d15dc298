package conformance

import (
	"hash/fnv"
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

// A fill makes n input values from r.
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

// eachRepeated repeats each of vals times times in turn: with cycle(vals)
// beside it, every pair of vals meets once.
func eachRepeated(vals []float32, times int) fill {
	return func(_ *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = vals[i/times%len(vals)]
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

// cauchy draws scale·tan(π(u-½)), clipped to the finite floats.
func cauchy(scale float64) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			x := scale * math.Tan(math.Pi*(r.Float64()-0.5))
			v[i] = float32(max(-math.MaxFloat32, min(math.MaxFloat32, x)))
		}
		return v
	}
}

// subnormals is half subnormal values of random sign and half values of
// magnitude in [1/4, 4).
func subnormals(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		if r.IntN(2) == 0 {
			v[i] = math.Float32frombits(1 + r.Uint32N(0x7fffff))
		} else {
			v[i] = float32(math.Ldexp(1+r.Float64(), r.IntN(4)-2))
		}
		if r.IntN(2) == 0 {
			v[i] = -v[i]
		}
	}
	return v
}

// integers draws whole numbers in [-bound, bound] times 2^exp.
func integers(bound, exp int) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Ldexp(float64(r.IntN(2*bound+1)-bound), exp))
		}
		return v
	}
}

// exactBound is the largest integer I with terms·I² < 2^24: sums of terms
// products of integers in [-I, I] are exact in float32 in any order (every
// partial sum is an integer below 2^24, times the same power of two).
func exactBound(terms int) int {
	return max(1, int(math.Sqrt(float64(1<<24-1)/float64(terms))))
}

// tf32Lost draws ±2^e·(1 + k·2^-23) for e in [-2, 2] with k below 2^13 (all
// of it lost in TF32 and bfloat16) or, for a quarter, below 2^16 (lost in
// bfloat16, partly kept by TF32).
func tf32Lost(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		k := 1 + r.IntN(1<<13-1)
		if r.IntN(4) == 0 {
			k = 1 + r.IntN(1<<16-1)
		}
		x := float32(math.Ldexp(1+math.Ldexp(float64(k), -23), r.IntN(5)-2))
		if r.IntN(2) == 0 {
			x = -x
		}
		v[i] = x
	}
	return v
}

// bigPairs lays out pairs x, -x of magnitude 2^16 to 2^24, so that a sum
// over neighbours cancels; an odd last value is normal.
func bigPairs(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := 0; i+1 < n; i += 2 {
		x := float32(math.Ldexp(1+r.Float64(), 16+r.IntN(9)))
		if r.IntN(2) == 0 {
			x = -x
		}
		v[i], v[i+1] = x, -x
	}
	if n%2 == 1 {
		v[n-1] = float32(r.NormFloat64())
	}
	return v
}

// nearOne draws 1 + N(0, 2^-8): factors that keep a pair x·a - x·b from
// cancelling exactly.
func nearOne(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(1 + math.Ldexp(r.NormFloat64(), -8))
	}
	return v
}

// transpose returns the [rows, cols] row-major matrix x stored as [cols,
// rows].
func transpose(x []float32, rows, cols int) []float32 {
	t := make([]float32, len(x))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = x[i*cols+j]
		}
	}
	return t
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

// rng returns the generator of a case, seeded by its name.
func rng(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	seed := h.Sum64()
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
