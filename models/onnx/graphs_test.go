package onnx

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/internal/ortlib"
	ort "github.com/yalue/onnxruntime_go"
)

// needORT initialises ONNX Runtime or skips the test.
func needORT(t *testing.T) {
	t.Helper()
	path, err := ortlib.Find("")
	if err == nil {
		err = ortlib.Init(path)
	}
	if err != nil {
		t.Skipf("ONNX Runtime unavailable: %v", err)
	}
}

// builders are every graph builder, by name.
func builders() []struct {
	name string
	m    *Model
} {
	return []struct {
		name string
		m    *Model
	}{
		{"matmul", MatMulGraph(false, false)},
		{"matmul_tA", MatMulGraph(true, false)},
		{"matmul_tB", MatMulGraph(false, true)},
		{"matmul_tAB", MatMulGraph(true, true)},
		{"conv", ConvGraph(ConvAttrs{StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 0, PadBottom: 2, PadRight: 1, DilationH: 1, DilationW: 2, Groups: 1}, false)},
		{"conv_bias", ConvGraph(ConvAttrs{Groups: 2}, true)},
		{"maxpool", MaxPoolGraph(PoolAttrs{KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 2, PadLeft: 1})},
		{"relu", ReluGraph()},
		{"softmax", SoftmaxGraph()},
		{"add", AddGraph()},
		{"tsne_repulsion", TSNERepulsionGraph()},
		{"tsne_attraction", TSNEAttractionGraph()},
		{"tsne_update", TSNEUpdateGraph()},
	}
}

// TestORTReadsBuilders checks that ONNX Runtime reads each builder's
// marshalled model with exactly the inputs and outputs it declares.
func TestORTReadsBuilders(t *testing.T) {
	needORT(t)
	for _, tc := range builders() {
		t.Run(tc.name, func(t *testing.T) {
			ins, outs, err := ort.GetInputOutputInfoWithONNXData(Marshal(tc.m))
			if err != nil {
				t.Fatal(err)
			}
			compareInfo(t, "input", ins, tc.m.Graph.Inputs)
			compareInfo(t, "output", outs, tc.m.Graph.Outputs)
		})
	}
}

func compareInfo(t *testing.T, kind string, got []ort.InputOutputInfo, want []ValueInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("ORT lists %d %ss, want %d", len(got), kind, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.Name || int(g.DataType) != w.ElemType || g.OrtValueType != ort.ONNXTypeTensor {
			t.Errorf("%s %d: ORT reads %q of type %d, want %q of type %d", kind, i, g.Name, g.DataType, w.Name, w.ElemType)
		}
		// ORT reports an unknown rank as rank 0, like a scalar.
		wantDims := make([]int64, len(w.Dims))
		for j, d := range w.Dims {
			wantDims[j] = d.Value
			if d.Param != "" {
				wantDims[j] = -1
			}
		}
		if !equalInts(g.Dimensions, wantDims) {
			t.Errorf("%s %q: ORT reads dims %v, want %v", kind, w.Name, g.Dimensions, wantDims)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// feed is one input: float32 or int64 data of a shape, rank 0 when shape is
// empty.
type feed struct {
	name  string
	shape []int64
	f32   []float32
	i64   []int64
}

func floats(name string, data []float32, shape ...int64) feed {
	return feed{name: name, shape: shape, f32: data}
}

func scalar(name string, v float32) feed { return feed{name: name, f32: []float32{v}} }

// run runs m in ONNX Runtime and returns its float outputs by name.
func run(t *testing.T, m *Model, feeds ...feed) map[string][]float32 {
	t.Helper()
	var inNames, outNames []string
	var ins, outs []ort.Value
	defer func() {
		for _, v := range append(ins, outs...) {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for _, f := range feeds {
		var v ort.Value
		var err error
		switch {
		case len(f.shape) == 0 && f.i64 != nil:
			v, err = ort.NewScalar(f.i64[0])
		case len(f.shape) == 0:
			v, err = ort.NewScalar(f.f32[0])
		case f.i64 != nil:
			v, err = ort.NewTensor(ort.NewShape(f.shape...), f.i64)
		default:
			v, err = ort.NewTensor(ort.NewShape(f.shape...), f.f32)
		}
		if err != nil {
			t.Fatalf("input %s: %v", f.name, err)
		}
		inNames = append(inNames, f.name)
		ins = append(ins, v)
	}
	for _, o := range m.Graph.Outputs {
		outNames = append(outNames, o.Name)
		var v ort.Value
		// onnxruntime_go cannot allocate a rank-0 output itself (its
		// Shape{} fails validation), so scalars are allocated here.
		if o.Dims != nil && len(o.Dims) == 0 {
			s, err := ort.NewEmptyScalar[float32]()
			if err != nil {
				t.Fatal(err)
			}
			v = s
		}
		outs = append(outs, v)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(Marshal(m), inNames, outNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(ins, outs); err != nil {
		t.Fatal(err)
	}
	res := make(map[string][]float32)
	for i, v := range outs {
		switch v := v.(type) {
		case *ort.Tensor[float32]:
			res[outNames[i]] = append([]float32(nil), v.GetData()...)
		case *ort.Scalar[float32]:
			res[outNames[i]] = []float32{v.GetData()}
		default:
			t.Fatalf("output %s: unexpected %T", outNames[i], v)
		}
	}
	return res
}

// checkClose compares got with want, each element within 1e-4 of its own
// size plus 1e-5 of scale (the largest |want| if scale is 0), which allows
// for float32 sums that cancel.
func checkClose(t *testing.T, what string, got []float32, want []float64, scale float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	if scale == 0 {
		for _, w := range want {
			scale = math.Max(scale, math.Abs(w))
		}
	}
	bad := 0
	for i := range want {
		g := float64(got[i])
		if !(math.Abs(g-want[i]) <= 1e-4*math.Abs(want[i])+1e-5*scale) {
			if bad++; bad <= 5 {
				t.Errorf("%s[%d] = %g, want %g", what, i, g, want[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(want))
	}
}

func randFloats(r *rand.Rand, n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return v
}

func TestRunMatMul(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(1, 2))
	const m, k, n = 3, 4, 5
	for _, tc := range []struct{ ta, tb bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		a, b := randFloats(r, m*k, -1, 1), randFloats(r, k*n, -1, 1)
		aShape, bShape := []int64{m, k}, []int64{k, n}
		at := func(i, p int) float64 { return float64(a[i*k+p]) }
		bt := func(p, j int) float64 { return float64(b[p*n+j]) }
		if tc.ta {
			aShape, at = []int64{k, m}, func(i, p int) float64 { return float64(a[p*m+i]) }
		}
		if tc.tb {
			bShape, bt = []int64{n, k}, func(p, j int) float64 { return float64(b[j*k+p]) }
		}
		want := make([]float64, m*n)
		for i := range m {
			for j := range n {
				for p := range k {
					want[i*n+j] += at(i, p) * bt(p, j)
				}
			}
		}
		got := run(t, MatMulGraph(tc.ta, tc.tb), floats("A", a, aShape...), floats("B", b, bShape...))
		checkClose(t, "Y", got["Y"], want, 0)
	}
}

func TestRunConv(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name             string
		a                ConvAttrs
		bias             bool
		n, c, h, w       int
		oc, kh, kw       int
		wantOutH, wantOW int
	}{
		{"plain", ConvAttrs{StrideH: 1, StrideW: 1, DilationH: 1, DilationW: 1, Groups: 1}, false, 2, 3, 6, 5, 4, 3, 3, 4, 3},
		{"zero_means_one", ConvAttrs{}, true, 1, 2, 5, 5, 3, 2, 2, 4, 4},
		{"stride_pad_dilation", ConvAttrs{StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 1, DilationH: 1, DilationW: 2, Groups: 1}, true, 2, 2, 7, 6, 3, 3, 2, 3, 7},
		{"groups", ConvAttrs{StrideH: 1, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 2, DilationW: 1, Groups: 2}, true, 1, 4, 6, 6, 6, 2, 3, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.a.Groups
			if g == 0 {
				g = 1
			}
			cg := tc.c / g
			x := randFloats(r, tc.n*tc.c*tc.h*tc.w, -1, 1)
			wt := randFloats(r, tc.oc*cg*tc.kh*tc.kw, -1, 1)
			bias := randFloats(r, tc.oc, -1, 1)
			want, oh, ow := refConv(x, wt, bias, tc.bias, tc.a, tc.n, tc.c, tc.h, tc.w, tc.oc, tc.kh, tc.kw)
			if oh != tc.wantOutH || ow != tc.wantOW {
				t.Fatalf("reference output %dx%d, want %dx%d", oh, ow, tc.wantOutH, tc.wantOW)
			}
			feeds := []feed{
				floats("X", x, int64(tc.n), int64(tc.c), int64(tc.h), int64(tc.w)),
				floats("W", wt, int64(tc.oc), int64(cg), int64(tc.kh), int64(tc.kw)),
			}
			if tc.bias {
				feeds = append(feeds, floats("B", bias, int64(tc.oc)))
			}
			got := run(t, ConvGraph(tc.a, tc.bias), feeds...)
			checkClose(t, "Y", got["Y"], want, 0)
		})
	}
}

func orOne(v int) int {
	if v == 0 {
		return 1
	}
	return v
}

// refConv is a direct NCHW convolution in float64.
func refConv(x, wt, bias []float32, useBias bool, a ConvAttrs, n, c, h, w, oc, kh, kw int) ([]float64, int, int) {
	sh, sw, dh, dw, g := orOne(a.StrideH), orOne(a.StrideW), orOne(a.DilationH), orOne(a.DilationW), orOne(a.Groups)
	cg, ocg := c/g, oc/g
	oh := (h+a.PadTop+a.PadBottom-dh*(kh-1)-1)/sh + 1
	ow := (w+a.PadLeft+a.PadRight-dw*(kw-1)-1)/sw + 1
	y := make([]float64, n*oc*oh*ow)
	for b := range n {
		for o := range oc {
			grp := o / ocg
			for i := range oh {
				for j := range ow {
					s := 0.0
					if useBias {
						s = float64(bias[o])
					}
					for ci := range cg {
						ch := grp*cg + ci
						for p := range kh {
							for q := range kw {
								yy, xx := i*sh-a.PadTop+p*dh, j*sw-a.PadLeft+q*dw
								if yy < 0 || yy >= h || xx < 0 || xx >= w {
									continue
								}
								s += float64(x[((b*c+ch)*h+yy)*w+xx]) * float64(wt[((o*cg+ci)*kh+p)*kw+q])
							}
						}
					}
					y[((b*oc+o)*oh+i)*ow+j] = s
				}
			}
		}
	}
	return y, oh, ow
}

func TestRunMaxPool(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name       string
		a          PoolAttrs
		n, c, h, w int
	}{
		{"2x2", PoolAttrs{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}, 2, 3, 6, 8},
		{"3x3_padded", PoolAttrs{KernelH: 3, KernelW: 3, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, 1, 2, 5, 4},
		{"asymmetric", PoolAttrs{KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 1}, 1, 2, 7, 5},
		{"zero_stride_means_one", PoolAttrs{KernelH: 2, KernelW: 2}, 1, 1, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Negative inputs: a padded zero must never win the max.
			x := randFloats(r, tc.n*tc.c*tc.h*tc.w, -2, -1)
			a := tc.a
			sh, sw := orOne(a.StrideH), orOne(a.StrideW)
			oh := (tc.h+a.PadTop+a.PadBottom-a.KernelH)/sh + 1
			ow := (tc.w+a.PadLeft+a.PadRight-a.KernelW)/sw + 1
			want := make([]float64, tc.n*tc.c*oh*ow)
			for b := range tc.n * tc.c {
				for i := range oh {
					for j := range ow {
						m := math.Inf(-1)
						for p := range a.KernelH {
							for q := range a.KernelW {
								yy, xx := i*sh-a.PadTop+p, j*sw-a.PadLeft+q
								if yy >= 0 && yy < tc.h && xx >= 0 && xx < tc.w {
									m = math.Max(m, float64(x[(b*tc.h+yy)*tc.w+xx]))
								}
							}
						}
						want[(b*oh+i)*ow+j] = m
					}
				}
			}
			got := run(t, MaxPoolGraph(a), floats("X", x, int64(tc.n), int64(tc.c), int64(tc.h), int64(tc.w)))
			checkClose(t, "Y", got["Y"], want, 0)
		})
	}
}

// TestRunElementwise runs the unknown-rank graphs at several ranks, one
// model serving them all.
func TestRunElementwise(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, shape := range [][]int64{{7}, {2, 3, 4}, {1, 2, 1, 5}} {
		size := 1
		for _, d := range shape {
			size *= int(d)
		}
		last := int(shape[len(shape)-1])
		x := randFloats(r, size, -3, 3)
		bias := randFloats(r, last, -1, 1)
		relu, soft, add := make([]float64, size), make([]float64, size), make([]float64, size)
		for i, v := range x {
			relu[i] = math.Max(float64(v), 0)
			add[i] = float64(v) + float64(bias[i%last])
		}
		for row := 0; row < size; row += last {
			sum := 0.0
			for i := row; i < row+last; i++ {
				soft[i] = math.Exp(float64(x[i]))
				sum += soft[i]
			}
			for i := row; i < row+last; i++ {
				soft[i] /= sum
			}
		}
		checkClose(t, "relu", run(t, ReluGraph(), floats("X", x, shape...))["Y"], relu, 0)
		checkClose(t, "softmax", run(t, SoftmaxGraph(), floats("X", x, shape...))["Y"], soft, 0)
		checkClose(t, "add", run(t, AddGraph(), floats("X", x, shape...), floats("B", bias, int64(last)))["Y"], add, 0)
	}
}

// tsneCase is a random t-SNE state: n points, a sparse P as sorted (row,
// col, p) entries with some self pairs and some zeros, and U and G.
type tsneCase struct {
	n          int
	y, u, g    []float32 // [n,2]
	rows, cols []int64
	vals       []float32
}

func newTSNECase(r *rand.Rand, n, perRow int) tsneCase {
	c := tsneCase{n: n, y: randFloats(r, 2*n, -4, 4), u: randFloats(r, 2*n, -1, 1), g: randFloats(r, 2*n, 0.005, 2)}
	for i := range 2 * n {
		switch i % 11 {
		case 0:
			c.u[i] = 0 // u > 0 is false for exact zeros
		case 5:
			c.g[i] = 0.011 // below min_gain after a decrease
		}
	}
	for i := range n {
		for k := range perRow {
			j := int64(r.IntN(n))
			if k == 0 && i%5 == 0 {
				j = int64(i) // a self pair: no force, no KL
			}
			p := float32(r.Float64() * 0.01)
			if (i+k)%9 == 0 {
				p = 0 // a zero: no force, no KL
			}
			c.rows, c.cols, c.vals = append(c.rows, int64(i)), append(c.cols, j), append(c.vals, p)
		}
	}
	return c
}

func kernel(y []float32, i, j int) (dx, dy, q float64) {
	dx = float64(y[2*i]) - float64(y[2*j])
	dy = float64(y[2*i+1]) - float64(y[2*j+1])
	return dx, dy, 1 / (1 + dx*dx + dy*dy)
}

// refRepulsion is the repulsion of docs/determinism.md's tsne_step, in
// float64: z[i] and rep[i] over all j != i.
func refRepulsion(y []float32, n int) (z, rep []float64) {
	z, rep = make([]float64, n), make([]float64, 2*n)
	for i := range n {
		for j := range n {
			if j == i {
				continue
			}
			dx, dy, q := kernel(y, i, j)
			z[i] += q
			rep[2*i] += q * q * dx
			rep[2*i+1] += q * q * dy
		}
	}
	return z, rep
}

// refAttraction is the attraction and the KL divergence, skipping self
// pairs, and zeros for the KL.
func refAttraction(c tsneCase, zsum float64) (attr []float64, kl, klScale float64) {
	attr = make([]float64, 2*c.n)
	for e, p32 := range c.vals {
		i, j, p := int(c.rows[e]), int(c.cols[e]), float64(p32)
		if i == j {
			continue
		}
		dx, dy, q := kernel(c.y, i, j)
		attr[2*i] += p * q * dx
		attr[2*i+1] += p * q * dy
		if p > 0 {
			term := p * math.Log(p*zsum/q)
			kl += term
			klScale += math.Abs(term)
		}
	}
	return attr, kl, klScale
}

type tsneParams struct{ z, eta, alpha, exag, minGain float32 }

// refUpdate is the gradient, gains, update and re-centring.
func refUpdate(c tsneCase, attr, rep []float32, p tsneParams) (yNew, uNew, gNew []float64) {
	n := c.n
	y := make([]float64, 2*n)
	uNew, gNew, yNew = make([]float64, 2*n), make([]float64, 2*n), make([]float64, 2*n)
	var mean [2]float64
	for k := range 2 * n {
		grad := 4 * (float64(p.exag)*float64(attr[k]) - float64(rep[k])/float64(p.z))
		u, h := float64(c.u[k]), float64(c.g[k])
		if (grad > 0) != (u > 0) {
			h += float64(float32(0.2))
		} else {
			h *= float64(float32(0.8))
		}
		h = math.Max(h, float64(p.minGain))
		uNew[k] = float64(p.alpha)*u - float64(p.eta)*(h*grad)
		gNew[k] = h
		y[k] = float64(c.y[k]) + uNew[k]
		mean[k%2] += y[k] / float64(n)
	}
	for k := range 2 * n {
		yNew[k] = y[k] - mean[k%2]
	}
	return yNew, uNew, gNew
}

func to32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}

func TestRunTSNE(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(9, 10))
	const n, block = 50, 16
	c := newTSNECase(r, n, 10)

	// Repulsion, by blocks of rows, the last one short.
	z, rep := refRepulsion(c.y, n)
	repM := TSNERepulsionGraph()
	var zsum float64
	for lo := 0; lo < n; lo += block {
		hi := min(lo+block, n)
		got := run(t, repM, floats("Yb", c.y[2*lo:2*hi], int64(hi-lo), 2), floats("Y", c.y, n, 2))
		checkClose(t, "z", got["z"], z[lo:hi], 0)
		checkClose(t, "rep", got["rep"], rep[2*lo:2*hi], 0)
		for _, v := range z[lo:hi] {
			zsum += v
		}
	}

	// Attraction and KL, given the same float32 Z.
	z32 := float32(zsum)
	attr, kl, klScale := refAttraction(c, float64(z32))
	got := run(t, TSNEAttractionGraph(),
		feed{name: "rows", shape: []int64{int64(len(c.rows))}, i64: c.rows},
		feed{name: "cols", shape: []int64{int64(len(c.cols))}, i64: c.cols},
		floats("vals", c.vals, int64(len(c.vals))),
		floats("Y", c.y, n, 2),
		scalar("Z", z32))
	checkClose(t, "attr", got["attr"], attr, 0)
	if math.IsNaN(float64(got["kl"][0])) {
		t.Fatal("kl is NaN")
	}
	checkClose(t, "kl", got["kl"], []float64{kl}, klScale)

	// The update, from the same float32 forces.
	p := tsneParams{z: z32, eta: 200, alpha: 0.5, exag: 12, minGain: 0.01}
	attr32, rep32 := to32(attr), to32(rep)
	yNew, uNew, gNew := refUpdate(c, attr32, rep32, p)
	got = run(t, TSNEUpdateGraph(),
		floats("Y", c.y, n, 2), floats("U", c.u, n, 2), floats("G", c.g, n, 2),
		floats("attr", attr32, n, 2), floats("rep", rep32, n, 2),
		scalar("Z", p.z), scalar("eta", p.eta), scalar("alpha", p.alpha), scalar("exag", p.exag), scalar("min_gain", p.minGain))
	checkClose(t, "Y_new", got["Y_new"], yNew, 0)
	checkClose(t, "U_new", got["U_new"], uNew, 0)
	checkClose(t, "G_new", got["G_new"], gNew, 0)
}
