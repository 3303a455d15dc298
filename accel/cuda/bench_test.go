package cuda

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// benchSizes reads a comma-separated list of sizes from env, or returns def.
func benchSizes(tb testing.TB, env string, def ...int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			tb.Fatalf("%s: %v", env, err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// kernelCall returns the backend's kernel for op in mode and a call of it
// on resident tensors, to time the kernel without the Session around it.
func kernelCall(tb testing.TB, be *Backend, op *accel.Op, mode accel.Mode, p any, in, out []*accel.Tensor) (accel.Kernel, *accel.Call) {
	tb.Helper()
	k := be.Kernel(op, mode)
	if k == nil {
		tb.Fatalf("no %s kernel in %s mode", op, mode)
	}
	return k, &accel.Call{Op: op, Mode: mode, In: in, Out: out, Params: p, WantScalar: op.WantsScalar(p)}
}

// resident uploads data as a tensor of shape on s.
func resident(tb testing.TB, s *accel.Session, data []float32, shape ...int) *accel.Tensor {
	x, err := s.FromFloat32(data, shape...)
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

// BenchmarkMatMul times one n×n×n matmul on resident tensors through the
// backend: strict (the package's kernel) and fast (cuBLAS). Each
// operation includes the wait for the GPU. Sizes: ACCELNODE_BENCH_SIZES
// (default 1024,4096).
func BenchmarkMatMul(b *testing.B) {
	for _, n := range benchSizes(b, "ACCELNODE_BENCH_SIZES", 1024, 4096) {
		for _, mode := range []accel.Mode{accel.Strict, accel.Fast} {
			b.Run(fmt.Sprintf("n=%d/%s", n, mode), func(b *testing.B) {
				be := gpu(b)
				s := newSession(b, be, mode, accel.Limits{})
				rng := rand.New(rand.NewPCG(1, 1))
				x := resident(b, s, randomData(rng, n*n), n, n)
				y := resident(b, s, randomData(rng, n*n), n, n)
				out, err := s.NewTensor(accel.F32, []int{n, n})
				if err != nil {
					b.Fatal(err)
				}
				k, c := kernelCall(b, be, accel.MatMul, mode, accel.MatMulParams{}, []*accel.Tensor{x, y}, []*accel.Tensor{out})
				ctx := context.Background()
				if err := k(ctx, c); err != nil { // compile, warm up
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if err := k(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
				reportFlops(b, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
}

// BenchmarkCublasDirect is cublasSgemm without the backend around it: b.N
// calls queued back to back on the device's stream, then one wait. Fast
// matmul's figure against this one is the backend's overhead.
func BenchmarkCublasDirect(b *testing.B) {
	for _, n := range benchSizes(b, "ACCELNODE_BENCH_SIZES", 1024, 4096) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			be := gpu(b)
			s := newSession(b, be, accel.Fast, accel.Limits{})
			rng := rand.New(rand.NewPCG(1, 1))
			x := resident(b, s, randomData(rng, n*n), n, n)
			y := resident(b, s, randomData(rng, n*n), n, n)
			out, err := s.NewTensor(accel.F32, []int{n, n})
			if err != nil {
				b.Fatal(err)
			}
			d := be.dev
			gemm := func(reps int) error {
				return d.do(func() error {
					h, err := d.cublas()
					if err != nil {
						return err
					}
					for range reps {
						if err := d.libs.blas.sgemmRowMajor(h, n, n, n, ptr(x), ptr(y), ptr(out), false, false); err != nil {
							return err
						}
					}
					return d.sync()
				})
			}
			if err := gemm(1); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := gemm(b.N); err != nil {
				b.Fatal(err)
			}
			reportFlops(b, 2*float64(n)*float64(n)*float64(n))
		})
	}
}

func reportFlops(b *testing.B, flops float64) {
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(flops/sec/1e12, "TFLOP/s")
	b.ReportMetric(sec*1e3, "ms/op")
}

// BenchmarkTSNEStep times one exact t-SNE iteration (with the KL
// divergence) over N points with 90 neighbours each, as for perplexity 30.
// Sizes: ACCELNODE_BENCH_TSNE (default 10000,70000).
func BenchmarkTSNEStep(b *testing.B) {
	for _, n := range benchSizes(b, "ACCELNODE_BENCH_TSNE", 10000, 70000) {
		for _, mode := range []accel.Mode{accel.Strict, accel.Fast} {
			b.Run(fmt.Sprintf("N=%d/%s", n, mode), func(b *testing.B) {
				be := gpu(b)
				p := newTSNEProblem(rand.New(rand.NewPCG(5, 5)), n, 90)
				s := newSession(b, be, mode, accel.Limits{})
				mustI := func(v []int32) *accel.Tensor {
					x, err := s.FromInt32(v, len(v))
					if err != nil {
						b.Fatal(err)
					}
					return x
				}
				st := accel.TSNEState{RowPtr: mustI(p.rowPtr), Cols: mustI(p.cols), Vals: resident(b, s, p.vals, len(p.vals)),
					Y: resident(b, s, p.y, n, 2), Update: resident(b, s, p.u, n, 2), Gains: resident(b, s, p.g, n, 2)}
				params := accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01, ComputeKL: true}
				k, c := kernelCall(b, be, accel.TSNEStep, mode, params,
					[]*accel.Tensor{st.RowPtr, st.Cols, st.Vals, st.Y, st.Update, st.Gains}, nil)
				ctx := context.Background()
				if err := k(ctx, c); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if err := k(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/op")
				// 20 flops per pair is the usual count for the exact gradient.
				b.ReportMetric(20*float64(n)*float64(n)/(b.Elapsed().Seconds()/float64(b.N))/1e12, "pair-TFLOP/s")
			})
		}
	}
}

// BenchmarkConv2D times an MNIST first layer and a ResNet-50 3×3 layer.
func BenchmarkConv2D(b *testing.B) {
	for _, c := range []struct {
		name string
		x    []int
		w    []int
		p    accel.Conv2DParams
	}{
		{"mnist-256x1x28x28-k32x3x3", []int{256, 1, 28, 28}, []int{32, 1, 3, 3}, accel.Conv2DParams{}},
		{"resnet50-32x64x56x56-k64x3x3-pad1", []int{32, 64, 56, 56}, []int{64, 64, 3, 3},
			accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}},
	} {
		for _, mode := range []accel.Mode{accel.Strict, accel.Fast} {
			b.Run(c.name+"/"+mode.String(), func(b *testing.B) {
				be := gpu(b)
				s := newSession(b, be, mode, accel.Limits{})
				rng := rand.New(rand.NewPCG(2, 2))
				size := func(sh []int) int { return sh[0] * sh[1] * sh[2] * sh[3] }
				x := resident(b, s, randomData(rng, size(c.x)), c.x...)
				w := resident(b, s, randomData(rng, size(c.w)), c.w...)
				bias := resident(b, s, randomData(rng, c.w[0]), c.w[0])
				p := c.p
				p.StrideH, p.StrideW, p.DilationH, p.DilationW, p.Groups = 1, 1, 1, 1, 1
				shape, err := accel.Conv2DShape(c.x, c.w, []int{c.w[0]}, p)
				if err != nil {
					b.Fatal(err)
				}
				out, err := s.NewTensor(accel.F32, shape)
				if err != nil {
					b.Fatal(err)
				}
				k, call := kernelCall(b, be, accel.Conv2D, mode, p, []*accel.Tensor{x, w, bias}, []*accel.Tensor{out})
				ctx := context.Background()
				if err := k(ctx, call); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if err := k(ctx, call); err != nil {
						b.Fatal(err)
					}
				}
				reportFlops(b, 2*float64(out.Len())*float64(c.w[1]*c.w[2]*c.w[3]))
			})
		}
	}
}
