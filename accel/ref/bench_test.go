package ref

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// BenchmarkMatMul times square products on every core.
func BenchmarkMatMul(b *testing.B) {
	for _, n := range []int{256, 512, 1024} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, uint64(n)))
			s := newSession(b, 0)
			x := tensorF32(b, s, []int{n, n}, randF32(r, n*n))
			y := tensorF32(b, s, []int{n, n}, randF32(r, n*n))
			for b.Loop() {
				out, err := s.MatMul(bg, x, y, accel.MatMulParams{})
				if err != nil {
					b.Fatal(err)
				}
				s.Free(out)
			}
			flops := 2 * float64(n) * float64(n) * float64(n)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkConv2D times the first layer of an MNIST network and a 3x3 layer of
// ResNet-50 on every core.
func BenchmarkConv2D(b *testing.B) {
	for _, c := range []struct {
		name                   string
		n, c, oc, h, w, kh, kw int
		pad                    int
	}{
		{"mnist_64x1x28x28_32x3x3", 64, 1, 32, 28, 28, 3, 3, 1},
		{"resnet50_1x64x56x56_64x3x3", 1, 64, 64, 56, 56, 3, 3, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(2, 3))
			s := newSession(b, 0)
			x := tensorF32(b, s, []int{c.n, c.c, c.h, c.w}, randF32(r, c.n*c.c*c.h*c.w))
			w := tensorF32(b, s, []int{c.oc, c.c, c.kh, c.kw}, randF32(r, c.oc*c.c*c.kh*c.kw))
			bias := tensorF32(b, s, []int{c.oc}, randF32(r, c.oc))
			p := accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: c.pad, PadLeft: c.pad, PadBottom: c.pad, PadRight: c.pad, DilationH: 1, DilationW: 1, Groups: 1}
			var outElems int
			for b.Loop() {
				out, err := s.Conv2D(bg, x, w, bias, p)
				if err != nil {
					b.Fatal(err)
				}
				outElems = out.Len()
				s.Free(out)
			}
			flops := 2 * float64(outElems) * float64(c.c*c.kh*c.kw)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkTSNEStep times one exact t-SNE iteration with about 90 entries of P
// per row, up to the size of MNIST.
func BenchmarkTSNEStep(b *testing.B) {
	for _, n := range []int{1000, 5000, 70000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(4, uint64(n)))
			s := newSession(b, 0)
			st := randomTSNE(r, n, 90).state(b, s)
			p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01}
			for b.Loop() {
				if _, err := s.TSNEStep(bg, st, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/op")
		})
	}
}
