package accel

import (
	"math"
	"testing"
)

func TestPool2DUnitsSaturate(t *testing.T) {
	tests := []struct {
		x, out []int
		p      Pool2DParams
		want   uint64
	}{
		{[]int{1, 1, 4, 4}, []int{1, 1, 2, 2}, Pool2DParams{KernelH: 2, KernelW: 2}, CallUnits + 4*(16+4) + 4*4},
		{[]int{1, 1, 1, 1}, []int{1 << 20, 1 << 20, 1 << 20, 1}, Pool2DParams{KernelH: math.MaxUint32, KernelW: math.MaxUint32}, math.MaxUint64},
	}
	for _, tc := range tests {
		if got := Pool2DUnits(tc.x, tc.out, tc.p); got != tc.want {
			t.Errorf("Pool2DUnits(%v, %v, %+v) = %d, want %d", tc.x, tc.out, tc.p, got, tc.want)
		}
	}
}
