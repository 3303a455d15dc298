package ort

import (
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// agreement is how far ONNX Runtime's outputs lie from ref's, the
// numerics contract's bits (the kernels of accel/internal/strictcpu).
type agreement struct {
	outputs   int
	identical int
	maxULP    int64
	sumULP    float64
}

func (a *agreement) add(got, want []float32) {
	for i := range want {
		a.outputs++
		d := strictmath.ULPs(got[i], want[i])
		if d == 0 {
			a.identical++
		}
		a.maxULP = max(a.maxULP, d)
		a.sumULP += float64(d)
	}
}

func (a agreement) share() float64   { return float64(a.identical) / float64(a.outputs) }
func (a agreement) meanULP() float64 { return a.sumULP / float64(a.outputs) }

// TestAgreementWithRef measures, on fixed random inputs, the share of ONNX
// Runtime's outputs that are bit-identical to ref's and their ULP
// distance, logs them (docs/benchmarks.md records them), and checks them
// against the documented ceilings: exact operations must agree bit for
// bit. tsne_step is not measured: it runs on the contract's kernel.
func TestAgreementWithRef(t *testing.T) {
	b := backend(t, 0)
	s := session(t, b)
	strict := b.strict.Table()
	pad1 := conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1)
	for _, tc := range []struct {
		name   string
		op     *accel.Op
		params any
		shapes [][]int
		// maxULP is the documented ceiling (docs/benchmarks.md); 0 means
		// bit-identical.
		maxULP int64
	}{
		{"matmul 256x256x256", accel.MatMul, accel.MatMulParams{}, [][]int{{256, 256}, {256, 256}}, 1 << 18},
		{"conv2d 8x16x28x28, 32 3x3, pad 1, bias", accel.Conv2D, pad1, [][]int{{8, 16, 28, 28}, {32, 16, 3, 3}, {32}}, 1 << 18},
		{"add_bias 64x32x16", accel.AddBias, accel.AddBiasParams{Axis: 1}, [][]int{{64, 32, 16}, {32}}, 0},
		{"add 64x32x16", accel.Add, accel.NoParams{}, [][]int{{64, 32, 16}, {64, 32, 16}}, 0},
		{"relu 100000", accel.Relu, accel.NoParams{}, [][]int{{100000}}, 0},
		{"maxpool2d 8x16x28x28, 2x2 stride 2", accel.MaxPool2D, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}, [][]int{{8, 16, 28, 28}}, 0},
		{"softmax 1000x100", accel.Softmax, accel.NoParams{}, [][]int{{1000, 100}}, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCall(t, s, rand.New(rand.NewPCG(11, 13)), tc.op, tc.params, tc.shapes...)
			var used bool
			got := runKernel(t, b.viaORT[tc.op], c, &used, b)
			if !used {
				t.Fatal("the call did not run on ONNX Runtime")
			}
			want := runKernel(t, strict[tc.op], c, nil, b)
			var a agreement
			a.add(got, want)
			t.Logf("%-40s %6.1f%% bit-identical, max %d ulp, mean %.2f ulp", tc.name, 100*a.share(), a.maxULP, a.meanULP())
			if a.maxULP > tc.maxULP {
				t.Errorf("max distance %d ulp exceeds the documented %d", a.maxULP, tc.maxULP)
			}
		})
	}
}
