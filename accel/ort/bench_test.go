package ort

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// benchMatMulSizes are the square products every matmul benchmark times.
var benchMatMulSizes = []int{256, 1024, 2048}

// benchConv is one convolution layer the benchmarks time: x [n,c,h,w]
// with oc kh×kw filters, padding pad on every side, stride 1, and a bias.
// The layers and their names are accel/ref's BenchmarkConv2D's.
type benchConv struct {
	name                   string
	n, c, oc, h, w, kh, kw int
	pad                    int
}

var benchConvs = []benchConv{
	{"mnist_64x1x28x28_32x3x3", 64, 1, 32, 28, 28, 3, 3, 1},
	{"resnet50_1x64x56x56_64x3x3", 1, 64, 64, 56, 56, 3, 3, 1},
}

func (c benchConv) xShape() []int    { return []int{c.n, c.c, c.h, c.w} }
func (c benchConv) wShape() []int    { return []int{c.oc, c.c, c.kh, c.kw} }
func (c benchConv) biasShape() []int { return []int{c.oc} }

func (c benchConv) params() accel.Conv2DParams {
	return accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: c.pad, PadLeft: c.pad, PadBottom: c.pad, PadRight: c.pad,
		DilationH: 1, DilationW: 1, Groups: 1}
}

func (c benchConv) attrs() onnx.ConvAttrs {
	p := c.params()
	return onnx.ConvAttrs{StrideH: p.StrideH, StrideW: p.StrideW, PadTop: p.PadTop, PadLeft: p.PadLeft,
		PadBottom: p.PadBottom, PadRight: p.PadRight, DilationH: p.DilationH, DilationW: p.DilationW, Groups: p.Groups}
}

// outShape is the convolution's output shape, and flops its multiply-adds
// counted as two flops each (the bias adds are not counted, as in accel/ref).
func (c benchConv) outShape(tb testing.TB) []int {
	shape, err := accel.Conv2DShape(c.xShape(), c.wShape(), c.biasShape(), c.params())
	if err != nil {
		tb.Fatal(err)
	}
	return shape
}

func (c benchConv) flops(tb testing.TB) float64 {
	return 2 * float64(shapeLen(c.outShape(tb))) * float64(c.c*c.kh*c.kw)
}

func shapeLen(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// benchData is n uniform values in [-1, 1).
func benchData(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

// benchResident uploads random data of shape as a tensor on s.
func benchResident(tb testing.TB, s *accel.Session, rng *rand.Rand, shape ...int) *accel.Tensor {
	tb.Helper()
	x, err := s.FromFloat32(benchData(rng, shapeLen(shape)), shape...)
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

func benchOutput(tb testing.TB, s *accel.Session, shape ...int) *accel.Tensor {
	tb.Helper()
	out, err := s.NewTensor(accel.F32, shape)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// reportGFLOPS reports flops per operation as GFLOP/s, and the operation's
// time in ms.
func reportGFLOPS(b *testing.B, flops float64) {
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(flops/sec/1e9, "GFLOP/s")
	b.ReportMetric(sec*1e3, "ms/op")
}

// benchThreads are the thread counts of the matmul benchmarks: the
// backend's default (every core) and one.
var benchThreads = []int{0, 1}

func threadsName(be *Backend) string { return fmt.Sprintf("threads=%d", be.Status().Threads) }

// BenchmarkMatMul times one n×n×n matmul on resident tensors through the
// backend's MatMul (wrapping the tensors for ONNX Runtime, run options, the
// Run, no copies), into a preallocated output, on every core and on one.
func BenchmarkMatMul(b *testing.B) {
	for _, n := range benchMatMulSizes {
		for _, threads := range benchThreads {
			be := backend(b, threads)
			b.Run(fmt.Sprintf("n=%d/%s", n, threadsName(be)), func(b *testing.B) {
				s := accel.NewSession(be, accel.Fast, accel.Limits{}, nil)
				defer s.Close()
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				x := benchResident(b, s, rng, n, n)
				y := benchResident(b, s, rng, n, n)
				out := benchOutput(b, s, n, n)
				ctx := context.Background()
				if err := be.MatMul(ctx, out, x, y, accel.MatMulParams{}); err != nil { // the session, warm-up
					b.Fatal(err)
				}
				for b.Loop() {
					if err := be.MatMul(ctx, out, x, y, accel.MatMulParams{}); err != nil {
						b.Fatal(err)
					}
				}
				reportGFLOPS(b, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
}

// BenchmarkConv2D times accel/ref's two convolution layers (an MNIST first
// layer and a ResNet-50 3×3 layer, both with bias) through the backend's
// Conv2D on resident tensors, on every core.
func BenchmarkConv2D(b *testing.B) {
	for _, c := range benchConvs {
		b.Run(c.name, func(b *testing.B) {
			be := backend(b, 0)
			s := accel.NewSession(be, accel.Fast, accel.Limits{}, nil)
			defer s.Close()
			rng := rand.New(rand.NewPCG(2, 3))
			x := benchResident(b, s, rng, c.xShape()...)
			w := benchResident(b, s, rng, c.wShape()...)
			bias := benchResident(b, s, rng, c.biasShape()...)
			out := benchOutput(b, s, c.outShape(b)...)
			ctx := context.Background()
			if err := be.Conv2D(ctx, out, x, w, bias, c.params()); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := be.Conv2D(ctx, out, x, w, bias, c.params()); err != nil {
					b.Fatal(err)
				}
			}
			reportGFLOPS(b, c.flops(b))
		})
	}
}

// BenchmarkDirect is ONNX Runtime without the backend around it: a
// DynamicAdvancedSession on the same graph bytes (onnx.MatMulGraph,
// onnx.ConvGraph) with the backend's session options, its tensors wrapped
// once outside the loop, and only session.Run in the loop. The backend's
// figures against these are its dispatch overhead: wrapping each tensor
// for ONNX Runtime, the run options and the context watch, and for conv the
// scan of the weights for non-finite values.
func BenchmarkDirect(b *testing.B) {
	for _, n := range benchMatMulSizes {
		for _, threads := range benchThreads {
			be := backend(b, threads)
			b.Run(fmt.Sprintf("matmul/n=%d/%s", n, threadsName(be)), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				session := directSession(b, be, onnx.Marshal(onnx.MatMulGraph(false, false)), []string{"A", "B"})
				in := []ort.Value{
					directTensor(b, benchData(rng, n*n), n, n),
					directTensor(b, benchData(rng, n*n), n, n),
				}
				out := []ort.Value{directTensor(b, make([]float32, n*n), n, n)}
				directLoop(b, session, in, out)
				reportGFLOPS(b, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
	for _, c := range benchConvs {
		be := backend(b, 0)
		b.Run(fmt.Sprintf("conv2d/%s/%s", c.name, threadsName(be)), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, 3))
			session := directSession(b, be, onnx.Marshal(onnx.ConvGraph(c.attrs(), true)), []string{"X", "W", "B"})
			in := []ort.Value{
				directTensor(b, benchData(rng, shapeLen(c.xShape())), c.xShape()...),
				directTensor(b, benchData(rng, shapeLen(c.wShape())), c.wShape()...),
				directTensor(b, benchData(rng, c.oc), c.biasShape()...),
			}
			shape := c.outShape(b)
			out := []ort.Value{directTensor(b, make([]float32, shapeLen(shape)), shape...)}
			directLoop(b, session, in, out)
			reportGFLOPS(b, c.flops(b))
		})
	}
}

// directSession creates a session on graph, with output "Y", and the
// options be gives its own sessions (its thread count among them).
func directSession(b *testing.B, be *Backend, graph []byte, inputs []string) *ort.DynamicAdvancedSession {
	b.Helper()
	opts, err := be.sessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(graph, inputs, []string{"Y"}, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Destroy() })
	return s
}

// directTensor wraps data, of shape, for ONNX Runtime without copying it.
func directTensor(b *testing.B, data []float32, shape ...int) ort.Value {
	b.Helper()
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	t, err := ort.NewTensor(ort.NewShape(dims...), data)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { t.Destroy() })
	return t
}

// directLoop runs session once to warm it up, then b.N times.
func directLoop(b *testing.B, session *ort.DynamicAdvancedSession, in, out []ort.Value) {
	b.Helper()
	if err := session.Run(in, out); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := session.Run(in, out); err != nil {
			b.Fatal(err)
		}
	}
}
