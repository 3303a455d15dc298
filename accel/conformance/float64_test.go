package conformance

import (
	"math"
	"testing"
)

// TestBounds checks that the float64 bounds reject what they should.
func TestBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		w    ev
		got  float32
		ok   bool
	}{
		{"exact equal", ev{v: 1}, 1, true},
		{"exact off by one ulp", ev{v: 1}, math.Nextafter32(1, 2), false},
		{"within bound", ev{v: 1, e: 1e-6}, 1.000001, true},
		{"beyond bound", ev{v: 1, e: 1e-7}, 1.000001, false},
		{"NaN wants NaN", ev{v: math.NaN()}, qNaN, true},
		{"NaN gets number", ev{v: math.NaN()}, 0, false},
		{"Inf wants same Inf", ev{v: math.Inf(1)}, posInf, true},
		{"Inf gets other Inf", ev{v: math.Inf(1)}, negInf, false},
		{"finite gets NaN", ev{v: 1, e: 1}, qNaN, false},
		{"may overflow gets Inf", ev{v: 1, e: 1, over: true}, negInf, true},
		{"may overflow gets far value", ev{v: 1, e: 1, over: true}, 5, false},
	} {
		if ok := c.w.admits(c.got); ok != c.ok {
			t.Errorf("%s: %v admits %g = %v, want %v", c.name, c.w, c.got, ok, c.ok)
		}
	}

	// The dot product that cancels: float64 gives 1, float32 in order 0.
	a := Tensor{Shape: []int{1, 3}, F32: []float32{1e8, 1, -1e8}}
	b := Tensor{Shape: []int{3, 1}, F32: []float32{1, 1, 1}}
	w, got := f64MatMul(a, b, noTrans)[0], specMatMul(a, b, noTrans)[0]
	if w.v != 1 || got != 0 || !w.admits(got) || w.admits(1e3) {
		t.Errorf("cancelling dot product: float64 %v, float32 %g", w, got)
	}
	// Partial sums beyond MaxFloat32 may overflow.
	big := Tensor{Shape: []int{1, 2}, F32: []float32{3e38, 3e38}}
	if w := f64MatMul(big, Tensor{Shape: []int{2, 1}, F32: []float32{1, -1}}, noTrans)[0]; !w.over {
		t.Errorf("3e38 - 3e38 not marked as overflowing: %v", w)
	}
}

// addProduct is add(mul(exact(a), exact(b))) to the bit.
func TestAddProduct(t *testing.T) {
	for _, a := range specials {
		for _, b := range specials {
			var fast, slow sum
			for _, s := range []*sum{&fast, &slow} {
				s.add(ev{v: 3, e: 1e-7})
			}
			fast.addProduct(a, b)
			slow.add(mul(exact(a), exact(b)))
			f, w := fast.ev(), slow.ev()
			if math.Float64bits(f.v) != math.Float64bits(w.v) || math.Float64bits(f.e) != math.Float64bits(w.e) || f.over != w.over {
				t.Errorf("%g·%g: addProduct gives %+v, add(mul) %+v", a, b, f, w)
			}
		}
	}
}
