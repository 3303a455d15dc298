// Package strictmath holds the float32 functions of the numerics contract
// (docs/determinism.md) that are more than one IEEE operation: exp, log,
// tanh, erf, the logistic sigmoid, the fixed-shape tree sum and NaN
// canonicalisation.
//
// Every function is a fixed sequence of IEEE 754 binary32 basic operations
// (add, subtract, multiply, divide, each rounded to nearest even) plus exact
// bit manipulation, so any backend that performs the same sequence (for
// example CUDA with __fadd_rn, __fmul_rn and __fdiv_rn) gets the same bits.
// This Go source is the normative definition. Every float32(...) conversion
// below is deliberate: in Go an explicit conversion forbids fusing a multiply
// and an add into an FMA.
//
// Exp, Log, Tanh (with its expm1) and Erf are transcriptions of FreeBSD
// msun's e_expf.c, e_logf.c, s_tanhf.c, s_expm1f.c and s_erff.c, whose
// notice follows:
//
//	Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//	Developed at SunPro, a Sun Microsystems, Inc. business.
//	Permission to use, copy, modify, and distribute this
//	software is freely granted, provided that this notice
//	is preserved.
package strictmath

import "math"

// CanonicalNaN is the bit pattern of every NaN the contract produces.
const CanonicalNaN = 0x7fc00000

// NaN returns the canonical quiet NaN.
func NaN() float32 { return math.Float32frombits(CanonicalNaN) }

// Canon returns x, or the canonical NaN if x is any NaN.
func Canon(x float32) float32 {
	if x != x {
		return math.Float32frombits(CanonicalNaN)
	}
	return x
}

// CanonSlice replaces every NaN in v with the canonical NaN.
func CanonSlice(v []float32) {
	for i, x := range v {
		if x != x {
			v[i] = math.Float32frombits(CanonicalNaN)
		}
	}
}

// TreeSum adds v in a fixed pairwise tree whose shape depends on len(v)
// alone: each level adds neighbours (v[0]+v[1], v[2]+v[3], ...) and carries
// an odd last element up unchanged, until one value is left. The sum of no
// values is +0. TreeSum does not modify v.
func TreeSum(v []float32) float32 {
	switch len(v) {
	case 0:
		return 0
	case 1:
		return v[0]
	}
	level := make([]float32, (len(v)+1)/2)
	for {
		n := len(v)
		for i := 0; i < n/2; i++ {
			level[i] = v[2*i] + v[2*i+1]
		}
		if n%2 == 1 {
			level[n/2] = v[n-1]
		}
		n = (n + 1) / 2
		if n == 1 {
			return level[0]
		}
		v, level = level[:n], level[:(n+1)/2]
	}
}

const (
	ln2Hi = float32(6.9313812256e-01) // 0x3f317180
	ln2Lo = float32(9.0580006145e-06) // 0x3717f7d1

	expInvLn2 = float32(1.4426950216e+00) // 0x3fb8aa3b
	expP1     = float32(1.6666667163e-01) // 0x3e2aaaab
	expP2     = float32(-2.7777778450e-03)
	expP3     = float32(6.6137559770e-05)
	expP4     = float32(-1.6533901999e-06)
	expP5     = float32(4.1381369442e-08)
	expOver   = float32(8.8721679688e+01) // 0x42b17180
	expUnder  = float32(-1.0397208405e+02)
	twoM100   = float32(7.8886090522e-31) // 2^-100
)

// Exp returns e**x, within one ulp for normal results. Results that
// underflow are +0 and results that overflow are +Inf.
func Exp(x float32) float32 {
	hx := math.Float32bits(x)
	negative := hx>>31 != 0
	hx &= 0x7fffffff

	if hx >= 0x42b17218 { // |x| >= 88.721..., or not finite
		switch {
		case hx > 0x7f800000:
			return NaN()
		case hx == 0x7f800000:
			if negative {
				return 0
			}
			return x
		case x > expOver:
			return float32(math.Inf(1))
		case x < expUnder:
			return 0
		}
	}

	var hi, lo float32
	var k int32
	switch {
	case hx > 0x3eb17218: // |x| > 0.5 ln2: reduce x to hi-lo with x = k ln2 + hi - lo
		if hx < 0x3F851592 { // and |x| < 1.5 ln2
			if negative {
				hi, lo, k = x+ln2Hi, -ln2Lo, -1
			} else {
				hi, lo, k = x-ln2Hi, ln2Lo, 1
			}
		} else {
			half := float32(0.5)
			if negative {
				half = -0.5
			}
			k = int32(float32(float32(expInvLn2*x) + half))
			t := float32(k)
			hi = x - float32(t*ln2Hi) // exact: t*ln2Hi has trailing zeros
			lo = float32(t * ln2Lo)
		}
		x = hi - lo
	case hx < 0x39000000: // |x| < 2^-13
		return 1 + x
	}

	t := float32(x * x)
	c := x - float32(t*float32(expP1+float32(t*float32(expP2+float32(t*float32(expP3+float32(t*float32(expP4+float32(t*expP5)))))))))
	if k == 0 {
		return 1 - (float32(float32(x*c)/(c-2)) - x)
	}
	y := 1 - ((lo - float32(float32(x*c)/(2-c))) - hi)
	if k >= -125 {
		return math.Float32frombits(math.Float32bits(y) + uint32(k)<<23)
	}
	return float32(math.Float32frombits(math.Float32bits(y)+uint32(k+100)<<23) * twoM100)
}

const (
	logTwo25 = float32(3.355443200e+07) // 2^25
	logLg1   = float32(0xaaaaaa) / (1 << 24)
	logLg2   = float32(0xccce13) / (1 << 25)
	logLg3   = float32(0x91e9ee) / (1 << 25)
	logLg4   = float32(0xf89e26) / (1 << 26)
	logThird = float32(0.33333333333333333)
)

// Log returns the natural logarithm of x, within one ulp. Log(±0) is -Inf,
// Log of a negative number is NaN and Log(+Inf) is +Inf.
func Log(x float32) float32 {
	ix := int32(math.Float32bits(x))
	k := int32(0)
	if ix < 0x00800000 { // x < 2^-126, negative, or zero
		switch {
		case ix&0x7fffffff == 0:
			return float32(math.Inf(-1))
		case ix < 0:
			return NaN()
		}
		k -= 25
		x = float32(x * logTwo25) // scale a subnormal up; exact
		ix = int32(math.Float32bits(x))
	}
	if ix >= 0x7f800000 {
		return Canon(x + x)
	}
	k += ix>>23 - 127
	ix &= 0x007fffff
	i := (ix + 0x95f64<<3) & 0x800000
	x = math.Float32frombits(uint32(ix | (i ^ 0x3f800000))) // x or x/2 in [sqrt(2)/2, sqrt(2))
	k += i >> 23
	f := x - 1
	dk := float32(k)
	if 0x007fffff&(0x8000+ix) < 0xc000 { // -2^-9 <= f < 2^-9
		if f == 0 {
			if k == 0 {
				return 0
			}
			return float32(dk*ln2Hi) + float32(dk*ln2Lo)
		}
		r := float32(float32(f*f) * (0.5 - float32(logThird*f)))
		if k == 0 {
			return f - r
		}
		return float32(dk*ln2Hi) - ((r - float32(dk*ln2Lo)) - f)
	}
	s := float32(f / (2 + f))
	z := float32(s * s)
	i = ix - 0x6147a<<3
	w := float32(z * z)
	j := 0x6b851<<3 - ix
	t1 := float32(w * float32(logLg2+float32(w*logLg4)))
	t2 := float32(z * float32(logLg1+float32(w*logLg3)))
	i |= j
	r := t2 + t1
	if i > 0 {
		hfsq := float32(float32(0.5*f) * f)
		if k == 0 {
			return f - (hfsq - float32(s*(hfsq+r)))
		}
		return float32(dk*ln2Hi) - ((hfsq - (float32(s*(hfsq+r)) + float32(dk*ln2Lo))) - f)
	}
	if k == 0 {
		return f - float32(s*(f-r))
	}
	return float32(dk*ln2Hi) - ((float32(s*(f-r)) - float32(dk*ln2Lo)) - f)
}

const (
	expm1Q1 = float32(-0x888868) / (1 << 28) // -3.3333212137e-02, 0xbd088868
	expm1Q2 = float32(0xcf3010) / (1 << 33)  // 1.5807170421e-03, 0x3acf3010
)

// expm1 returns e**x - 1, a transcription of msun's s_expm1f.c: within one
// ulp of the float64 result rounded to float32 for every float32 x (0.81 ulp
// of the float64 result at worst). It keeps the sign of a zero, is +Inf
// above the overflow threshold, -1 below -27 ln2 and the canonical NaN for
// NaN.
func expm1(x float32) float32 {
	hx := math.Float32bits(x)
	negative := hx>>31 != 0
	hx &= 0x7fffffff

	if hx >= 0x4195b844 { // |x| >= 27 ln2, or not finite
		if hx >= 0x42b17218 { // |x| >= 88.721...
			switch {
			case hx > 0x7f800000:
				return NaN()
			case hx == 0x7f800000:
				if negative {
					return -1
				}
				return x
			case x > expOver:
				return float32(math.Inf(1))
			}
		}
		if negative {
			return -1
		}
	}

	var hi, lo, c float32
	var k int32
	switch {
	case hx > 0x3eb17218: // |x| > 0.5 ln2: reduce x to hi-lo with x = k ln2 + hi - lo
		if hx < 0x3F851592 { // and |x| < 1.5 ln2
			if negative {
				hi, lo, k = x+ln2Hi, -ln2Lo, -1
			} else {
				hi, lo, k = x-ln2Hi, ln2Lo, 1
			}
		} else {
			half := float32(0.5)
			if negative {
				half = -0.5
			}
			k = int32(float32(float32(expInvLn2*x) + half))
			t := float32(k)
			hi = x - float32(t*ln2Hi) // exact: t*ln2Hi has trailing zeros
			lo = float32(t * ln2Lo)
		}
		x = hi - lo
		c = (hi - x) - lo
	case hx < 0x33000000: // |x| < 2^-25
		return x
	}

	hfx := float32(0.5 * x)
	hxs := float32(x * hfx)
	r1 := 1 + float32(hxs*float32(expm1Q1+float32(hxs*expm1Q2)))
	t := 3 - float32(r1*hfx)
	e := float32(hxs * float32((r1-t)/(6-float32(x*t))))
	if k == 0 {
		return x - (float32(x*e) - hxs)
	}
	twopk := math.Float32frombits(uint32(0x3f800000 + k<<23)) // 2^k; +Inf for k = 128, unused then
	e = float32(x*(e-c)) - c
	e -= hxs
	switch {
	case k == -1:
		return float32(0.5*(x-e)) - 0.5
	case k == 1:
		if x < -0.25 {
			return float32(-2 * (e - (x + 0.5)))
		}
		return 1 + float32(2*(x-e))
	case k <= -2 || k > 56: // exp(x)-1 is exp(x) scaled, less one
		y := 1 - (e - x)
		if k == 128 {
			y = float32(float32(y*2) * 0x1p127)
		} else {
			y = float32(y * twopk)
		}
		return y - 1
	case k < 23:
		t = math.Float32frombits(uint32(0x3f800000 - 0x1000000>>k)) // 1 - 2^-k
		y := t - (e - x)
		return float32(y * twopk)
	}
	t = math.Float32frombits(uint32((0x7f - k) << 23)) // 2^-k
	y := x - (e + t)
	y += 1
	return float32(y * twopk)
}

// Tanh returns the hyperbolic tangent of x, a transcription of msun's
// s_tanhf.c. Measured over every float32 against float64 math.Tanh, it is
// within 2 ulp of the rounded result (2.19 ulp of the float64 result at
// worst); the 2-ulp cases all have 2^-7 <= |x| < 1. Tanh(±0) is ±0,
// Tanh(±Inf) is ±1, Tanh of |x| >= 9 is exactly ±1 and Tanh of |x| < 2^-12
// is x itself.
func Tanh(x float32) float32 {
	jx := math.Float32bits(x)
	ix := jx & 0x7fffffff
	negative := jx>>31 != 0

	var z float32
	switch {
	case ix > 0x7f800000:
		return NaN()
	case ix >= 0x41100000: // |x| >= 9, or infinite
		z = 1
	case ix < 0x39800000: // |x| < 2^-12
		return x
	case ix >= 0x3f800000: // |x| >= 1
		t := expm1(float32(2 * abs(x)))
		z = 1 - 2/(t+2)
	default:
		t := expm1(float32(-2 * abs(x)))
		z = -t / (t + 2)
	}
	if negative {
		return -z
	}
	return z
}

// abs clears the sign bit of x.
func abs(x float32) float32 {
	return math.Float32frombits(math.Float32bits(x) &^ 0x80000000)
}

const (
	erfErx  = float32(8.42697144e-01)  // 0x3f57bb00
	erfEfx  = float32(1.28379166e-01)  // 0x3e0375d4
	erfEfx8 = float32(1.02703333e+00)  // 0x3f8375d4
	erfPp0  = float32(1.28379166e-01)  // 0x3e0375d4
	erfPp1  = float32(-3.36030394e-01) // 0xbeac0c2d
	erfPp2  = float32(-1.86261395e-03) // 0xbaf422f4
	erfQq1  = float32(3.12324315e-01)  // 0x3e9fe8f9
	erfQq2  = float32(2.16070414e-02)  // 0x3cb10140
	erfQq3  = float32(-1.98859372e-03) // 0xbb025311
	erfPa0  = float32(3.65041046e-06)  // 0x3674f993
	erfPa1  = float32(4.15109307e-01)  // 0x3ed48935
	erfPa2  = float32(-2.09395722e-01) // 0xbe566bd5
	erfPa3  = float32(8.67677554e-02)  // 0x3db1b34b
	erfQa1  = float32(4.95560974e-01)  // 0x3efdba2b
	erfQa2  = float32(3.71248513e-01)  // 0x3ebe1449
	erfQa3  = float32(3.92478965e-02)  // 0x3d20c267
	erfRa0  = float32(-9.88156721e-03) // 0xbc21e64c
	erfRa1  = float32(-5.43658376e-01) // 0xbf0b2d32
	erfRa2  = float32(-1.66828310e+00) // 0xbfd58a4d
	erfRa3  = float32(-6.91554189e-01) // 0xbf3109b2
	erfSa1  = float32(4.48581553e+00)  // 0x408f8bcd
	erfSa2  = float32(4.10799170e+00)  // 0x408374ab
	erfSa3  = float32(5.53855181e-01)  // 0x3f0dc974
	erfRb0  = float32(-9.86496918e-03) // 0xbc21a0ae
	erfRb1  = float32(-5.48049808e-01) // 0xbf0c4cfe
	erfRb2  = float32(-1.84115684e+00) // 0xbfebab07
	erfSb1  = float32(4.87132740e+00)  // 0x409be1ea
	erfSb2  = float32(3.04982710e+00)  // 0x4043305e
	erfSb3  = float32(-7.61900663e-01) // 0xbf430bec
)

// Erf returns the error function of x, a transcription of msun's s_erff.c
// (the revision with the rational approximations of low degree that returns
// ±1 from |x| >= 4). Measured over every float32 against float64 math.Erf,
// it is within one ulp of the rounded result, subnormal results included
// (0.89 ulp of the float64 result at worst). Erf(±0) is ±0 and Erf(±Inf) is
// ±1; Erf of |x| >= 4 is exactly ±1.
func Erf(x float32) float32 {
	hx := int32(math.Float32bits(x))
	ix := hx & 0x7fffffff
	if ix >= 0x7f800000 {
		switch {
		case ix > 0x7f800000:
			return NaN()
		case hx < 0:
			return -1
		}
		return 1
	}

	if ix < 0x3f580000 { // |x| < 0.84375
		if ix < 0x38800000 { // |x| < 2^-14
			if ix < 0x04000000 { // |x| < 2^-119: scaled by 8 against underflow
				return (float32(8*x) + float32(erfEfx8*x)) / 8
			}
			return x + float32(erfEfx*x)
		}
		z := float32(x * x)
		r := erfPp0 + float32(z*float32(erfPp1+float32(z*erfPp2)))
		s := 1 + float32(z*float32(erfQq1+float32(z*float32(erfQq2+float32(z*erfQq3)))))
		y := r / s
		return x + float32(x*y)
	}
	if ix < 0x3fa00000 { // 0.84375 <= |x| < 1.25
		s := abs(x) - 1
		p := erfPa0 + float32(s*float32(erfPa1+float32(s*float32(erfPa2+float32(s*erfPa3)))))
		q := 1 + float32(s*float32(erfQa1+float32(s*float32(erfQa2+float32(s*erfQa3)))))
		if hx >= 0 {
			return erfErx + p/q
		}
		return -erfErx - p/q
	}
	if ix >= 0x40800000 { // |x| >= 4
		if hx >= 0 {
			return 1
		}
		return -1
	}
	x = abs(x)
	s := 1 / float32(x*x)
	var r, q float32
	if ix < 0x4036db8c { // |x| < 2.85715, about 1/0.35
		r = erfRa0 + float32(s*float32(erfRa1+float32(s*float32(erfRa2+float32(s*erfRa3)))))
		q = 1 + float32(s*float32(erfSa1+float32(s*float32(erfSa2+float32(s*erfSa3)))))
	} else {
		r = erfRb0 + float32(s*float32(erfRb1+float32(s*erfRb2)))
		q = 1 + float32(s*float32(erfSb1+float32(s*float32(erfSb2+float32(s*erfSb3)))))
	}
	z := math.Float32frombits(uint32(ix) & 0xffffe000) // |x| with 13 bits cleared: z*z is exact
	e := float32(Exp(float32(-z*z)-0.5625) * Exp(float32(float32(z-x)*float32(z+x))+r/q))
	if hx >= 0 {
		return 1 - e/x
	}
	return e/x - 1
}

// sigmoidLow is the largest x for which Exp(-x) overflows.
const sigmoidLow = float32(-8.8722839355e+01) // 0xc2b17218

// Sigmoid returns the logistic function 1/(1+e**-x), computed as
// 1/(1+Exp(-x)) with each operation rounded. Measured over every float32
// against the float64 formula, it is within 2 ulp of the rounded result for
// normal results and one step for subnormal ones (2.48 ulp of the float64
// result at worst); the 2-ulp cases all have -19.5 < x < 0, where the result
// is below 0.5 and the rounding of 1+Exp(-x) is coarse beside its ulp. For
// x <= -88.72..., where Exp(-x) overflows and that form would give +0 for
// results that are subnormal, Sigmoid is Exp(x), which equals e**x/(1+e**x)
// there to far within a subnormal step. Sigmoid(0) is 0.5, Sigmoid(-Inf) is
// +0 and Sigmoid(+Inf) is 1.
func Sigmoid(x float32) float32 {
	switch {
	case x != x:
		return NaN()
	case x <= sigmoidLow:
		return Exp(x)
	}
	return 1 / (1 + Exp(-x))
}

// ULPs is the distance between a and b in float32 steps, counting across
// zero (so -0 and +0 are 0 apart). Two NaNs are 0 apart; a NaN and a number
// are math.MaxInt32 apart.
func ULPs(a, b float32) int64 {
	switch {
	case a != a && b != b:
		return 0
	case a != a || b != b:
		return math.MaxInt32
	}
	key := func(x float32) int64 {
		v := int64(math.Float32bits(x))
		if v&0x80000000 != 0 {
			return -(v & 0x7fffffff)
		}
		return v
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}

// BlockLen is the length of the runs BlockSum adds in order.
const BlockLen = 256

// BlockSum adds v in runs of BlockLen consecutive values, each run summed
// in order from +0, and then adds the runs' sums with TreeSum. The order
// depends on len(v) alone; a GPU computes the runs in parallel and the
// tree in a few steps, where one long chain would serialise. A slice of at
// most BlockLen values is the plain sequential sum from +0.
func BlockSum(v []float32) float32 {
	if len(v) <= BlockLen {
		return runSum(v)
	}
	runs := make([]float32, (len(v)+BlockLen-1)/BlockLen)
	for i := range runs {
		runs[i] = runSum(v[i*BlockLen : min(len(v), (i+1)*BlockLen)])
	}
	return TreeSum(runs)
}

func runSum(v []float32) float32 {
	var s float32
	for _, x := range v {
		s += x
	}
	return s
}
