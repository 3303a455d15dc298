package strictcpu

import (
	"math"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

func TestAddBiasHand(t *testing.T) {
	x := []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	for _, c := range []struct {
		name  string
		shape []int
		x     []float32
		bias  []float32
		axis  int
		want  []float32
	}{
		{"middle axis", []int{2, 3, 2}, x, []float32{10, 20, 30}, 1, []float32{10, 11, 22, 23, 34, 35, 16, 17, 28, 29, 40, 41}},
		{"first axis", []int{2, 3, 2}, x, []float32{100, 200}, 0, []float32{100, 101, 102, 103, 104, 105, 206, 207, 208, 209, 210, 211}},
		{"last axis", []int{2, 3, 2}, x, []float32{0.5, -0.5}, 2, []float32{0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5, 8.5, 8.5, 10.5, 10.5}},
		{"vector", []int{3}, []float32{1, 2, 3}, []float32{1, 2, 3}, 0, []float32{2, 4, 6}},
		// -0 + -0 keeps its sign; NaN is canonical; Inf - Inf is NaN.
		{"special values", []int{4}, []float32{negZ, negZ, nanPay, inf}, []float32{negZ, 0, 1, -inf}, 0,
			[]float32{negZ, 0, strictmath.NaN(), strictmath.NaN()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, 2)
			out, err := s.AddBias(bg, tensorF32(t, s, c.shape, c.x), tensorF32(t, s, []int{len(c.bias)}, c.bias), c.axis)
			if err != nil {
				t.Fatalf("add_bias: %v", err)
			}
			checkBits(t, c.name, readF32(t, s, out), c.want)
		})
	}
}

func TestReluHand(t *testing.T) {
	sub := math.Float32frombits(1) // the smallest subnormal
	in := []float32{1.5, -1.5, 0, negZ, inf, -inf, nanPay, strictmath.NaN(), sub, -sub}
	want := []float32{1.5, 0, 0, 0, inf, 0, strictmath.NaN(), strictmath.NaN(), sub, 0}
	s := newSession(t, 2)
	out, err := s.Relu(bg, tensorF32(t, s, []int{2, 5}, in))
	if err != nil {
		t.Fatalf("relu: %v", err)
	}
	checkBits(t, "relu", readF32(t, s, out), want)
}

func TestMaxPool2DHand(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape []int
		x     []float32
		p     accel.Pool2DParams
		want  []float32
	}{
		{"first of equal zeros wins", []int{1, 2, 1, 2}, []float32{negZ, 0, 0, negZ},
			accel.Pool2DParams{KernelH: 1, KernelW: 2, StrideH: 1, StrideW: 1}, []float32{negZ, 0}},
		{"nan sticks", []int{1, 2, 1, 3}, []float32{1, nanPay, 5, nanPay, 7, inf},
			accel.Pool2DParams{KernelH: 1, KernelW: 3, StrideH: 1, StrideW: 1}, []float32{strictmath.NaN(), strictmath.NaN()}},
		{"infinities", []int{1, 1, 1, 4}, []float32{-inf, -inf, 3, inf},
			accel.Pool2DParams{KernelH: 1, KernelW: 2, StrideH: 2, StrideW: 2}, []float32{-inf, inf}},
		// Padding is skipped, not read as 0: every window of negative
		// inputs stays negative. 2x2 kernel, stride 1, padding 1: 3x3 out.
		{"padding skipped", []int{1, 1, 2, 2}, []float32{-1, -2, -3, -4},
			accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
			[]float32{-1, -1, -2, -1, -1, -2, -3, -3, -4}},
		// 2x2 windows, stride 2, over two channels of 2x4.
		{"stride", []int{1, 2, 2, 4}, []float32{1, 5, 2, 0, 3, 4, 9, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf},
			accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}, []float32{5, 9, -inf, -inf}},
		// Kernel 3x2, stride (2, 1), padding top 2 and right 1 over 3x3:
		// OH = (3+2-3)/2+1 = 2, OW = (3+1-2)/1+1 = 3.
		{"asymmetric", []int{1, 1, 3, 3}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9},
			accel.Pool2DParams{KernelH: 3, KernelW: 2, StrideH: 2, StrideW: 1, PadTop: 2, PadRight: 1},
			[]float32{2, 3, 3, 8, 9, 9}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, 2)
			out, err := s.MaxPool2D(bg, tensorF32(t, s, c.shape, c.x), c.p)
			if err != nil {
				t.Fatalf("maxpool2d: %v", err)
			}
			checkBits(t, c.name, readF32(t, s, out), c.want)
		})
	}
}

func TestSoftmaxHand(t *testing.T) {
	nan := strictmath.NaN()
	for _, c := range []struct {
		name  string
		shape []int
		x     []float32
		want  []float32
	}{
		{"uniform rows", []int{2, 4}, []float32{0, 0, 0, 0, 5, 5, 5, 5}, []float32{0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25}},
		{"large", []int{2}, []float32{1000, 1000}, []float32{0.5, 0.5}},
		{"single", []int{1, 1}, []float32{-7}, []float32{1}},
		{"minus infinity", []int{2}, []float32{-inf, 0}, []float32{0, 1}},
		// m = +Inf: Inf - Inf is NaN, so the sum and every output are NaN.
		{"plus infinity", []int{2}, []float32{inf, 1}, []float32{nan, nan}},
		{"nan", []int{3}, []float32{1, nanPay, 3}, []float32{nan, nan, nan}},
		// All -Inf: -Inf - -Inf is NaN.
		{"all minus infinity", []int{2}, []float32{-inf, -inf}, []float32{nan, nan}},
		// exp(0) = 1 and exp(-Inf)... rows stay independent.
		{"rows independent", []int{2, 2}, []float32{nanPay, 0, 3, 3}, []float32{nan, nan, 0.5, 0.5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, 2)
			out, err := s.Softmax(bg, tensorF32(t, s, c.shape, c.x))
			if err != nil {
				t.Fatalf("softmax: %v", err)
			}
			checkBits(t, c.name, readF32(t, s, out), c.want)
		})
	}
	// One row worked through: m = 3, e = exp(-2), exp(-1), exp(0) = 1,
	// s = (e0 + e1) + 1, y = e / s.
	s := newSession(t, 1)
	out, err := s.Softmax(bg, tensorF32(t, s, []int{3}, []float32{1, 2, 3}))
	if err != nil {
		t.Fatalf("softmax: %v", err)
	}
	e0, e1 := strictmath.Exp(-2), strictmath.Exp(-1)
	sum := e0 + e1 + 1
	checkBits(t, "1 2 3", readF32(t, s, out), []float32{e0 / sum, e1 / sum, 1 / sum})
	if got := readF32(t, s, out); math.Abs(float64(got[2])-0.66524096) > 1e-6 {
		t.Errorf("softmax(1 2 3)[2] = %g, want about 0.665241", got[2])
	}
}
