package conformance

import (
	"math"
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
