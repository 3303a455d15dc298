package strictmath

import (
	"math"
	"testing"
)

// ulps is the distance between a and b in units in the last place, counting
// across zero.
func ulps(a, b float32) int64 {
	key := func(x float32) int64 {
		u := int64(math.Float32bits(x))
		if u&0x80000000 != 0 {
			return -(u & 0x7fffffff)
		}
		return u
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}

// sweep visits every 97th float32 bit pattern: about 44 million values
// covering every exponent, sign and NaN payload class.
func sweep(f func(x float32)) {
	for u := uint64(0); u < 1<<32; u += 97 {
		f(math.Float32frombits(uint32(u)))
	}
}

func TestExpAgainstFloat64(t *testing.T) {
	if testing.Short() {
		t.Skip("long sweep")
	}
	var worst int64
	sweep(func(x float32) {
		got := Exp(x)
		want := float32(math.Exp(float64(x)))
		if x != x {
			if math.Float32bits(got) != CanonicalNaN {
				t.Fatalf("Exp(NaN %#x) = %#x, want canonical NaN", math.Float32bits(x), math.Float32bits(got))
			}
			return
		}
		if want == 0 || math.IsInf(float64(want), 0) || want < 0x1p-126 {
			// Outside the normal range only the class must agree, within a
			// subnormal step.
			if math.IsInf(float64(want), 0) != math.IsInf(float64(got), 0) || ulps(got, want) > 1 {
				t.Fatalf("Exp(%g) = %g, want %g", x, got, want)
			}
			return
		}
		if d := ulps(got, want); d > worst {
			worst = d
		}
	})
	t.Logf("worst Exp error: %d ulp", worst)
	if worst > 1 {
		t.Fatalf("Exp is off by %d ulp at worst, want at most 1", worst)
	}
}

func TestLogAgainstFloat64(t *testing.T) {
	if testing.Short() {
		t.Skip("long sweep")
	}
	var worst int64
	sweep(func(x float32) {
		got := Log(x)
		if x != x || x < 0 {
			if math.Float32bits(got) != CanonicalNaN {
				t.Fatalf("Log(%g) = %#x, want canonical NaN", x, math.Float32bits(got))
			}
			return
		}
		want := float32(math.Log(float64(x)))
		if d := ulps(got, want); d > worst {
			worst = d
		}
	})
	t.Logf("worst Log error: %d ulp", worst)
	if worst > 1 {
		t.Fatalf("Log is off by %d ulp at worst, want at most 1", worst)
	}
}

func TestSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		f    func(float32) float32
		in   float32
		want float32
	}{
		{"exp(0)", Exp, 0, 1},
		{"exp(-0)", Exp, float32(math.Copysign(0, -1)), 1},
		{"exp(+inf)", Exp, inf, inf},
		{"exp(-inf)", Exp, -inf, 0},
		{"exp(100)", Exp, 100, inf},
		{"exp(-200)", Exp, -200, 0},
		{"exp(1)", Exp, 1, float32(math.E)},
		{"log(1)", Log, 1, 0},
		{"log(0)", Log, 0, -inf},
		{"log(-0)", Log, float32(math.Copysign(0, -1)), -inf},
		{"log(+inf)", Log, inf, inf},
		{"log(e)", Log, float32(math.E), 1},
		{"log(smallest subnormal)", Log, math.Float32frombits(1), float32(math.Log(0x1p-149))},
	}
	for _, tc := range tests {
		if got := tc.f(tc.in); math.Float32bits(got) != math.Float32bits(tc.want) && ulps(got, tc.want) > 1 {
			t.Errorf("%s = %g, want %g", tc.name, got, tc.want)
		}
	}
	if got := Log(-1); math.Float32bits(got) != CanonicalNaN {
		t.Errorf("log(-1) = %#x, want canonical NaN", math.Float32bits(got))
	}
}

// checkAgainstFloat64 sweeps f against ref rounded to float32 and fails if
// f is more than bound ulp off for a normal result, more than one step off
// for a subnormal or zero one, or anything but the canonical NaN for a NaN.
func checkAgainstFloat64(t *testing.T, name string, f func(float32) float32, ref func(float64) float64, bound int64) {
	t.Helper()
	if testing.Short() {
		t.Skip("long sweep")
	}
	var worst int64
	var worstX float32
	sweep(func(x float32) {
		got := f(x)
		if x != x {
			if math.Float32bits(got) != CanonicalNaN {
				t.Fatalf("%s(NaN %#x) = %#x, want canonical NaN", name, math.Float32bits(x), math.Float32bits(got))
			}
			return
		}
		want := float32(ref(float64(x)))
		if math.Abs(float64(want)) < 0x1p-126 {
			if ulps(got, want) > 1 {
				t.Fatalf("%s(%g) = %g, want %g", name, x, got, want)
			}
			return
		}
		if d := ulps(got, want); d > worst {
			worst, worstX = d, x
		}
	})
	t.Logf("worst %s error: %d ulp, at %g", name, worst, worstX)
	if worst > bound {
		t.Fatalf("%s is off by %d ulp at %g, want at most %d", name, worst, worstX, bound)
	}
}

func TestTanhAgainstFloat64(t *testing.T) {
	checkAgainstFloat64(t, "Tanh", Tanh, math.Tanh, 2)
}

func TestErfAgainstFloat64(t *testing.T) {
	checkAgainstFloat64(t, "Erf", Erf, math.Erf, 1)
}

func TestSigmoidAgainstFloat64(t *testing.T) {
	sigmoid := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	checkAgainstFloat64(t, "Sigmoid", Sigmoid, sigmoid, 2)
}

func TestExpm1AgainstFloat64(t *testing.T) {
	checkAgainstFloat64(t, "expm1", expm1, math.Expm1, 1)
}

// TestSpecialValuesExact wants the very bits: the sign of a zero, an exact
// ±1 and the canonical NaN.
func TestSpecialValuesExact(t *testing.T) {
	inf := float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	tiny := math.Float32frombits(1) // the smallest subnormal
	nan := NaN()
	tests := []struct {
		name string
		f    func(float32) float32
		in   float32
		want float32
	}{
		{"tanh(payload NaN)", Tanh, math.Float32frombits(0xffc12345), nan},
		{"tanh(signalling NaN)", Tanh, math.Float32frombits(0x7f800001), nan},
		{"tanh(0)", Tanh, 0, 0},
		{"tanh(-0)", Tanh, negZero, negZero},
		{"tanh(+inf)", Tanh, inf, 1},
		{"tanh(-inf)", Tanh, -inf, -1},
		{"tanh(9)", Tanh, 9, 1},
		{"tanh(-9)", Tanh, -9, -1},
		{"tanh(1e30)", Tanh, 1e30, 1},
		{"tanh(smallest subnormal)", Tanh, tiny, tiny},
		{"tanh(-2^-13)", Tanh, -0x1p-13, -0x1p-13},
		{"erf(payload NaN)", Erf, math.Float32frombits(0xffc12345), nan},
		{"erf(0)", Erf, 0, 0},
		{"erf(-0)", Erf, negZero, negZero},
		{"erf(+inf)", Erf, inf, 1},
		{"erf(-inf)", Erf, -inf, -1},
		{"erf(4)", Erf, 4, 1},
		{"erf(-4)", Erf, -4, -1},
		{"erf(-1e30)", Erf, -1e30, -1},
		{"erf(smallest subnormal)", Erf, tiny, tiny},
		{"erf(-smallest subnormal)", Erf, -tiny, -tiny},
		{"sigmoid(payload NaN)", Sigmoid, math.Float32frombits(0xffc12345), nan},
		{"sigmoid(0)", Sigmoid, 0, 0.5},
		{"sigmoid(-0)", Sigmoid, negZero, 0.5},
		{"sigmoid(+inf)", Sigmoid, inf, 1},
		{"sigmoid(-inf)", Sigmoid, -inf, 0},
		{"sigmoid(100)", Sigmoid, 100, 1},
		{"sigmoid(-200)", Sigmoid, -200, 0},
		// Below -88.72..., where Exp(-x) overflows, the subnormal result is
		// Exp(x), not +0.
		{"sigmoid(-100)", Sigmoid, -100, Exp(-100)},
		{"sigmoid(-88.7228...)", Sigmoid, sigmoidLow, Exp(sigmoidLow)},
	}
	for _, tc := range tests {
		if got := tc.f(tc.in); math.Float32bits(got) != math.Float32bits(tc.want) {
			t.Errorf("%s = %g (%#x), want %g (%#x)", tc.name, got, math.Float32bits(got), tc.want, math.Float32bits(tc.want))
		}
	}
	if Sigmoid(-100) == 0 || Exp(-sigmoidLow) != inf || Exp(-math.Nextafter32(sigmoidLow, 0)) == inf {
		t.Errorf("sigmoidLow %g is not where Exp(-x) starts to overflow", sigmoidLow)
	}
}

func TestTreeSum(t *testing.T) {
	tests := []struct {
		in   []float32
		want float32
	}{
		{nil, 0},
		{[]float32{3}, 3},
		{[]float32{1, 2, 3}, 6},
		{[]float32{1, 2, 3, 4, 5}, 15},
		// ((1e8 + 1) + (-1e8 + 1)) shows the pairing: a left-to-right sum
		// gives 1, the tree gives 0.
		{[]float32{1e8, 1, -1e8, 1}, 0},
		// (a+b)+(c) with an odd carry: ((1e8+(-1e8)) + 1) = 1.
		{[]float32{1e8, -1e8, 1}, 1},
	}
	for _, tc := range tests {
		in := append([]float32(nil), tc.in...)
		if got := TreeSum(in); got != tc.want {
			t.Errorf("TreeSum(%v) = %g, want %g", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("TreeSum modified its input")
			}
		}
	}
}

func TestCanon(t *testing.T) {
	payload := math.Float32frombits(0xffc12345)
	if got := math.Float32bits(Canon(payload)); got != CanonicalNaN {
		t.Errorf("Canon(%#x) = %#x", 0xffc12345, got)
	}
	v := []float32{1, payload, float32(math.Copysign(0, -1))}
	CanonSlice(v)
	if math.Float32bits(v[1]) != CanonicalNaN || math.Float32bits(v[2]) != 0x80000000 || v[0] != 1 {
		t.Errorf("CanonSlice = %#v", v)
	}
}
