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
// The layers and their names are accel/internal/strictcpu's
// BenchmarkConv2D's.
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
	return conv2DParams(1, 1, c.pad, c.pad, c.pad, c.pad, 1, 1, 1)
}

// outShape is the convolution's output shape, and flops its multiply-adds
// counted as two flops each (the bias adds are not counted, as in
// strictcpu's benchmarks).
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

// newCall makes a call of op on fresh random inputs of the given shapes
// (nil for an absent optional input) in s, with its outputs allocated, for
// a kernel to be called on directly.
func newCall(tb testing.TB, s *accel.Session, rng *rand.Rand, op *accel.Op, p any, shapes ...[]int) *accel.Call {
	tb.Helper()
	c := &accel.Call{Op: op, Mode: s.Mode(), Params: p, In: make([]*accel.Tensor, len(shapes))}
	for i, shape := range shapes {
		if shape == nil {
			continue
		}
		t, err := s.FromFloat32(benchData(rng, shapeLen(shape)), shape...)
		if err != nil {
			tb.Fatal(err)
		}
		c.In[i] = t
	}
	outShapes, err := op.Shapes(shapes, p)
	if err != nil {
		tb.Fatal(err)
	}
	for _, shape := range outShapes {
		t, err := s.NewTensor(accel.F32, shape)
		if err != nil {
			tb.Fatal(err)
		}
		c.Out = append(c.Out, t)
	}
	return c
}

// session opens a fast-mode session on be, closed with the test.
func session(tb testing.TB, be accel.Backend) *accel.Session {
	tb.Helper()
	s, err := accel.NewSession(be, accel.Fast, accel.Limits{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// loop calls k on c once to warm it up (creating its session), then b.N
// times.
func loop(b *testing.B, k accel.Kernel, c *accel.Call) {
	b.Helper()
	ctx := context.Background()
	if err := k(ctx, c); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := k(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
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

// BenchmarkMatMul times one n×n×n matmul on resident tensors through ONNX
// Runtime's kernel (wrapping the tensors, run options, the Run, no
// copies), into a preallocated output, on every core and on one.
func BenchmarkMatMul(b *testing.B) {
	for _, n := range benchMatMulSizes {
		for _, threads := range benchThreads {
			be := backend(b, threads)
			b.Run(fmt.Sprintf("n=%d/%s", n, threadsName(be)), func(b *testing.B) {
				c := newCall(b, session(b, be), rand.New(rand.NewPCG(1, uint64(n))), accel.MatMul, accel.MatMulParams{}, []int{n, n}, []int{n, n})
				loop(b, be.viaORT[accel.MatMul], c)
				reportGFLOPS(b, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
}

// BenchmarkConv2D times two convolution layers (an MNIST first layer and a
// ResNet-50 3×3 layer, both with bias) through ONNX Runtime's kernel on
// resident tensors, on every core.
func BenchmarkConv2D(b *testing.B) {
	for _, cv := range benchConvs {
		b.Run(cv.name, func(b *testing.B) {
			be := backend(b, 0)
			c := newCall(b, session(b, be), rand.New(rand.NewPCG(2, 3)), accel.Conv2D, cv.params(), cv.xShape(), cv.wShape(), cv.biasShape())
			loop(b, be.viaORT[accel.Conv2D], c)
			reportGFLOPS(b, cv.flops(b))
		})
	}
}

// cnnCall is one call of the cnn example guest (examples/cnn): conv 1→8
// and 8→16 with 3×3 filters, padding 1 and a bias, relu, 2×2 max-pool,
// a dense layer 784→10 as matmul and add_bias, softmax.
type cnnCall struct {
	name   string
	op     *accel.Op
	params any
	shapes func(batch int) [][]int
}

var cnnCalls = []cnnCall{
	{"conv1", accel.Conv2D, conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1),
		func(n int) [][]int { return [][]int{{n, 1, 28, 28}, {8, 1, 3, 3}, {8}} }},
	{"relu1", accel.Relu, accel.NoParams{}, func(n int) [][]int { return [][]int{{n, 8, 28, 28}} }},
	{"pool1", accel.MaxPool2D, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2},
		func(n int) [][]int { return [][]int{{n, 8, 28, 28}} }},
	{"conv2", accel.Conv2D, conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1),
		func(n int) [][]int { return [][]int{{n, 8, 14, 14}, {16, 8, 3, 3}, {16}} }},
	{"relu2", accel.Relu, accel.NoParams{}, func(n int) [][]int { return [][]int{{n, 16, 14, 14}} }},
	{"pool2", accel.MaxPool2D, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2},
		func(n int) [][]int { return [][]int{{n, 16, 14, 14}} }},
	{"dense", accel.MatMul, accel.MatMulParams{}, func(n int) [][]int { return [][]int{{n, 784}, {784, 10}} }},
	{"bias", accel.AddBias, accel.AddBiasParams{Axis: 1}, func(n int) [][]int { return [][]int{{n, 10}, {10}} }},
	{"softmax", accel.Softmax, accel.NoParams{}, func(n int) [][]int { return [][]int{{n, 10}} }},
}

// BenchmarkCNN times every call of the cnn example guest at batch 1, 8 and
// 64 on ONNX Runtime's kernel ("ort"), on the contract's CPU kernel
// ("strictcpu"), and through the backend's routing ("routed"), which
// should match the faster of the two. routing.go's rule comes from these
// figures.
func BenchmarkCNN(b *testing.B) {
	be := backend(b, 0)
	strict := be.strict.Table()
	for _, batch := range []int{1, 8, 64} {
		for _, cc := range cnnCalls {
			shapes := cc.shapes(batch)
			for _, k := range []struct {
				name   string
				kernel accel.Kernel
			}{{"ort", be.viaORT[cc.op]}, {"strictcpu", strict[cc.op]}, {"routed", be.table[cc.op]}} {
				b.Run(fmt.Sprintf("batch=%d/%s_%s/%s", batch, cc.name, accel.ShapeString(shapes[0]), k.name), func(b *testing.B) {
					c := newCall(b, session(b, be), rand.New(rand.NewPCG(4, 5)), cc.op, cc.params, shapes...)
					loop(b, k.kernel, c)
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
				})
			}
		}
	}
}

// BenchmarkCrossover times small calls of every operation on ONNX Runtime
// and on the contract's CPU kernel, at sizes around routing.go's
// thresholds, which come from these figures.
func BenchmarkCrossover(b *testing.B) {
	be := backend(b, 0)
	strict := be.strict.Table()
	type sized struct {
		name   string
		op     *accel.Op
		params any
		shapes [][]int
	}
	var cases []sized
	for _, n := range []int{256, 1024, 4096, 16384, 65536} {
		cases = append(cases,
			sized{fmt.Sprintf("relu/n=%d", n), accel.Relu, accel.NoParams{}, [][]int{{n}}},
			sized{fmt.Sprintf("add/n=%d", n), accel.Add, accel.NoParams{}, [][]int{{n}, {n}}},
			sized{fmt.Sprintf("add_bias/n=%d", n), accel.AddBias, accel.AddBiasParams{Axis: 1}, [][]int{{n / 16, 16}, {16}}},
			sized{fmt.Sprintf("softmax/n=%d", n), accel.Softmax, accel.NoParams{}, [][]int{{n / 16, 16}}},
		)
	}
	for _, n := range []int{4, 8, 16, 32, 64} {
		cases = append(cases, sized{fmt.Sprintf("matmul/%dx%dx%d", n, n, n), accel.MatMul, accel.MatMulParams{}, [][]int{{n, n}, {n, n}}})
	}
	for _, h := range []int{4, 8, 16, 32} {
		cases = append(cases,
			sized{fmt.Sprintf("conv2d/1x4x%dx%d_4x3x3", h, h), accel.Conv2D, conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1), [][]int{{1, 4, h, h}, {4, 4, 3, 3}, {4}}},
			sized{fmt.Sprintf("maxpool2d/1x4x%dx%d_2x2", h, h), accel.MaxPool2D, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}, [][]int{{1, 4, h, h}}})
	}
	for _, sc := range cases {
		for _, k := range []struct {
			name   string
			kernel accel.Kernel
		}{{"ort", be.viaORT[sc.op]}, {"strictcpu", strict[sc.op]}} {
			b.Run(sc.name+"/"+k.name, func(b *testing.B) {
				loop(b, k.kernel, newCall(b, session(b, be), rand.New(rand.NewPCG(4, 5)), sc.op, sc.params, sc.shapes...))
			})
		}
	}
}

// BenchmarkCNNForward times the cnn example guest's whole forward pass
// through a Session, as the guest makes it: on the backend ("ort", its
// routing included) and on the contract's kernels alone ("strictcpu"),
// warm (sessions created) and cold (a new backend for each pass, so that
// every ONNX Runtime session is created again; the process's one-time
// initialisation of ONNX Runtime is not counted).
func BenchmarkCNNForward(b *testing.B) {
	for _, batch := range []int{1, 8, 64} {
		for _, path := range []string{"ort", "strictcpu"} {
			for _, cold := range []bool{false, true} {
				name := fmt.Sprintf("batch=%d/%s/warm", batch, path)
				if cold {
					if path == "strictcpu" {
						continue // it has nothing to create
					}
					name = fmt.Sprintf("batch=%d/%s/cold", batch, path)
				}
				b.Run(name, func(b *testing.B) {
					be := backend(b, 0)
					s := session(b, be)
					table := be.table
					if path == "strictcpu" {
						table = be.strict.Table()
					}
					rng := rand.New(rand.NewPCG(6, 7))
					calls := make([]*accel.Call, len(cnnCalls))
					for i, cc := range cnnCalls {
						calls[i] = newCall(b, s, rng, cc.op, cc.params, cc.shapes(batch)...)
					}
					ctx := context.Background()
					pass := func(table accel.Kernels) {
						for i, c := range calls {
							if err := table[c.Op](ctx, c); err != nil {
								b.Fatalf("%s: %v", cnnCalls[i].name, err)
							}
						}
					}
					pass(table)
					for b.Loop() {
						if cold {
							fresh := New(accel.Options{}, false)
							table = fresh.table
							pass(table)
							fresh.Close()
							continue
						}
						pass(table)
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
				})
			}
		}
	}
}

// BenchmarkDirect is ONNX Runtime without the backend around it: a
// DynamicAdvancedSession on the same graph bytes with the backend's session
// options, its tensors wrapped once outside the loop, and only
// session.Run in the loop. The kernels' figures against these are their
// dispatch overhead: wrapping each tensor, the run options and the context
// watch, the session cache, and for conv the scan of the weights for
// non-finite values.
func BenchmarkDirect(b *testing.B) {
	for _, n := range benchMatMulSizes {
		for _, threads := range benchThreads {
			be := backend(b, threads)
			b.Run(fmt.Sprintf("matmul/n=%d/%s", n, threadsName(be)), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				session := directSession(b, be, onnx.Marshal(matMulGraph(false, false)), []string{"A", "B"})
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
			session := directSession(b, be, onnx.Marshal(convGraph(c.params(), true)), []string{"X", "W", "B"})
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
	s, err := be.newSession(graph, inputs, []string{"Y"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Destroy() })
	return s
}

// directTensor wraps data, of shape, for ONNX Runtime without copying it.
func directTensor(b *testing.B, data []float32, shape ...int) ort.Value {
	b.Helper()
	t, err := ort.NewTensor(dims(shape), data)
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
