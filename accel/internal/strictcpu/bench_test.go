package strictcpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// BenchmarkMatMul times square products with every kernel level this CPU
// runs, on one thread and on every core.
func BenchmarkMatMul(b *testing.B) {
	for _, n := range []int{256, 512, 1024, 2048} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, uint64(n)))
			xs, ys := randF32(r, n*n), randF32(r, n*n)
			for _, kern := range kernelLevels {
				for _, threads := range benchThreads() {
					b.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(b *testing.B) {
						s := newSessionKernels(b, threads, kern)
						x := tensorF32(b, s, []int{n, n}, xs)
						y := tensorF32(b, s, []int{n, n}, ys)
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
		})
	}
}

// benchThreads are the thread counts benchmarks run at: one, and every core.
func benchThreads() []int {
	if p := runtime.GOMAXPROCS(0); p > 1 {
		return []int{1, p}
	}
	return []int{1}
}

// BenchmarkConv2D times the first layer of an MNIST network and a 3x3 layer of
// ResNet-50 on every core, with every kernel level this CPU runs.
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
			xs := randF32(r, c.n*c.c*c.h*c.w)
			ws := randF32(r, c.oc*c.c*c.kh*c.kw)
			bs := randF32(r, c.oc)
			for _, kern := range kernelLevels {
				b.Run(kern.name, func(b *testing.B) {
					s := newSessionKernels(b, 0, kern)
					x := tensorF32(b, s, []int{c.n, c.c, c.h, c.w}, xs)
					w := tensorF32(b, s, []int{c.oc, c.c, c.kh, c.kw}, ws)
					bias := tensorF32(b, s, []int{c.oc}, bs)
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
