// Package strictmath holds the float32 functions of the numerics contract
// (docs/determinism.md) that are more than one IEEE operation: exp, log, the
// fixed-shape tree sum and NaN canonicalisation.
//
// Every function is a fixed sequence of IEEE 754 binary32 basic operations
// (add, subtract, multiply, divide, each rounded to nearest even) plus exact
// bit manipulation, so any backend that performs the same sequence (for
// example CUDA with __fadd_rn, __fmul_rn and __fdiv_rn) gets the same bits.
// This Go source is the normative definition. Every float32(...) conversion
// below is deliberate: in Go an explicit conversion forbids fusing a multiply
// and an add into an FMA.
//
// Exp and Log are transcriptions of FreeBSD msun's e_expf.c and e_logf.c,
// whose notice follows:
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
