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
