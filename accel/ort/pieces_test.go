package ort

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestPieces runs calls split into many pieces, as long calls are, and
// checks them against the same calls run whole: bit for bit, except that
// ONNX Runtime's products may round differently when blocked differently.
func TestPieces(t *testing.T) {
	b := backend(t, 2)
	s := session(t, b)
	pad1 := conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1)
	for _, tc := range []struct {
		name   string
		op     *accel.Op
		params any
		shapes [][]int
		exact  bool
	}{
		{"matmul", accel.MatMul, accel.MatMulParams{}, [][]int{{37, 19}, {19, 23}}, false},
		{"matmul transA", accel.MatMul, accel.MatMulParams{TransA: true}, [][]int{{19, 37}, {19, 23}}, false},
		{"matmul transB", accel.MatMul, accel.MatMulParams{TransB: true}, [][]int{{37, 19}, {23, 19}}, false},
		{"matmul transA transB", accel.MatMul, accel.MatMulParams{TransA: true, TransB: true}, [][]int{{19, 37}, {23, 19}}, false},
		{"conv2d by channels", accel.Conv2D, pad1, [][]int{{3, 4, 9, 9}, {6, 4, 3, 3}, {6}}, false},
		{"conv2d by channels, no bias", accel.Conv2D, pad1, [][]int{{3, 4, 9, 9}, {6, 4, 3, 3}, nil}, false},
		{"conv2d by images", accel.Conv2D, conv2DParams(2, 1, 0, 1, 2, 0, 1, 2, 2), [][]int{{5, 4, 9, 9}, {6, 2, 3, 3}, {6}}, false},
		{"maxpool2d", accel.MaxPool2D, accel.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 1, PadLeft: 1}, [][]int{{4, 5, 10, 10}}, true},
		{"relu", accel.Relu, accel.NoParams{}, [][]int{{10, 101}}, true},
		{"add", accel.Add, accel.NoParams{}, [][]int{{1001}, {1001}}, true},
		{"softmax", accel.Softmax, accel.NoParams{}, [][]int{{5, 10, 30}}, true},
		{"add_bias axis 1", accel.AddBias, accel.AddBiasParams{Axis: 1}, [][]int{{12, 5, 6}, {5}}, true},
		{"add_bias last axis", accel.AddBias, accel.AddBiasParams{Axis: 2}, [][]int{{9, 4, 11}, {11}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCall(t, s, rand.New(rand.NewPCG(41, 42)), tc.op, tc.params, tc.shapes...)
			var used bool
			whole := runKernel(t, b.viaORT[tc.op], c, &used, b)
			if !used {
				t.Fatal("the call did not run on ONNX Runtime")
			}
			ops, elems := pieceOps, pieceElems
			pieceOps, pieceElems = 1000, 100
			defer func() { pieceOps, pieceElems = ops, elems }()
			clear(hostData(c.Out[0]))
			runs := runsOf(b, func() { runKernel(t, b.viaORT[tc.op], c, nil, b) })
			if runs < 3 {
				t.Fatalf("the call ran in %d pieces, want several", runs)
			}
			got := hostData(c.Out[0])
			if tc.exact && !bitsEqual(got, whole) {
				t.Errorf("in %d pieces the result differs from the whole call's", runs)
			}
			for i, w := range whole {
				// Sums of a few dozen products of normal values.
				if d := math.Abs(float64(got[i] - w)); !(d <= 1e-5*(1+math.Abs(float64(w)))) {
					t.Fatalf("in %d pieces element %d is %g, whole %g", runs, i, got[i], w)
				}
			}
		})
	}
}

// runsOf runs f and returns how many runs of operations' graphs it made.
func runsOf(b *Backend, f func()) uint64 {
	before := b.pieces.Load()
	f()
	return b.pieces.Load() - before
}
