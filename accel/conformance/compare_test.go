package conformance

import (
	"math"
	"strings"
	"testing"
)

func TestULPs(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		a, b float32
		want int64
	}{
		{1, 1, 0},
		{1, math.Nextafter32(1, 2), 1},
		{math.Nextafter32(1, 2), 1, 1},
		{0, negZero, 0},
		{minSub, -minSub, 2},
		{-1, 1, 2 * int64(math.Float32bits(1))},
		{nan, nan, 0},
		{nan, 1, math.MaxInt32},
		{float32(math.Inf(1)), maxFloat, 1},
	} {
		if got := ULPs(c.a, c.b); got != c.want {
			t.Errorf("ULPs(%g, %g) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestBitDiff checks the mismatch report of the bit comparison.
func TestBitDiff(t *testing.T) {
	got := []float32{1, negZero, qNaN, math.Nextafter32(1, 2), 0}
	want := []float32{1, 0, negNaN, 1, minSub}
	d := bitDiff([]int{5}, got, want)
	for _, s := range []string{
		"at [1]: got 0x80000000 (-0), want 0x00000000 (0), sign of zero differs",
		"at [2]: got 0x7fc00000 (NaN), want 0xffc00001 (NaN), both NaN",
		"at [3]: got 0x3f800001 (1.0000001), want 0x3f800000 (1), 1 ulp apart",
		"at [4]: got 0x00000000 (0), want 0x00000001 (1e-45), 1 ulp apart",
		"(4 of 5 elements differ)",
	} {
		if !strings.Contains(d, s) {
			t.Errorf("report lacks %q:\n%s", s, d)
		}
	}
	if d := bitDiff([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6}, []float32{1, 2, 3, 4, 5, -6}); !strings.Contains(d, "at [1,2]") {
		t.Errorf("index not [1,2]:\n%s", d)
	}
	if d := bitDiff([]int{1}, []float32{negZero}, []float32{negZero}); d != "" {
		t.Errorf("equal bits reported:\n%s", d)
	}
}
