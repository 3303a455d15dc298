package ort

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// needORT initialises ONNX Runtime, through a backend, or fails.
func needORT(t *testing.T) { backend(t, 1) }

func conv2DParams(sh, sw, pt, pl, pb, pr, dh, dw, g int) accel.Conv2DParams {
	return accel.Conv2DParams{StrideH: sh, StrideW: sw, PadTop: pt, PadLeft: pl, PadBottom: pb, PadRight: pr, DilationH: dh, DilationW: dw, Groups: g}
}

// builders are every graph builder, by name.
func builders() []struct {
	name string
	m    *onnx.Model
} {
	return []struct {
		name string
		m    *onnx.Model
	}{
		{"matmul", matMulGraph(false, false)},
		{"matmul_tA", matMulGraph(true, false)},
		{"matmul_tB", matMulGraph(false, true)},
		{"matmul_tAB", matMulGraph(true, true)},
		{"conv", convGraph(conv2DParams(2, 1, 1, 0, 2, 1, 1, 2, 1), false)},
		{"conv_bias", convGraph(conv2DParams(1, 1, 0, 0, 0, 0, 1, 1, 2), true)},
		{"maxpool", maxPoolGraph(accel.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 2, PadLeft: 1})},
		{"relu", reluGraph()},
		{"softmax", softmaxGraph()},
		{"add", addGraph()},
	}
}

// TestBuildersRoundTrip checks that each graph reads back from its encoding
// unchanged, so that ONNX Runtime is given exactly what was built.
func TestBuildersRoundTrip(t *testing.T) {
	for _, tc := range builders() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := onnx.Unmarshal(onnx.Marshal(tc.m))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("round trip changed the graph:\n got %+v\nwant %+v", got, tc.m)
			}
		})
	}
}

// TestORTReadsBuilders checks that ONNX Runtime reads each builder's
// marshalled model with exactly the inputs and outputs it declares.
func TestORTReadsBuilders(t *testing.T) {
	needORT(t)
	for _, tc := range builders() {
		t.Run(tc.name, func(t *testing.T) {
			ins, outs, err := ort.GetInputOutputInfoWithONNXData(onnx.Marshal(tc.m))
			if err != nil {
				t.Fatal(err)
			}
			compareInfo(t, "input", ins, tc.m.Graph.Inputs)
			compareInfo(t, "output", outs, tc.m.Graph.Outputs)
		})
	}
}

func compareInfo(t *testing.T, kind string, got []ort.InputOutputInfo, want []onnx.ValueInfo) {
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

// feed is one float input of a shape.
type feed struct {
	name  string
	shape []int64
	f32   []float32
}

func floats(name string, data []float32, shape ...int64) feed {
	return feed{name: name, shape: shape, f32: data}
}

// runDirect runs m in a session of its own and returns its outputs by
// name. The graphs have no rank-0 outputs, so ONNX Runtime allocates them.
func runDirect(t *testing.T, m *onnx.Model, feeds ...feed) map[string][]float32 {
	t.Helper()
	var inNames []string
	var ins values
	defer ins.destroy()
	for _, f := range feeds {
		v, err := ort.NewTensor(ort.NewShape(f.shape...), f.f32)
		if err != nil {
			t.Fatalf("input %s: %v", f.name, err)
		}
		inNames = append(inNames, f.name)
		ins = append(ins, v)
	}
	outNames := valueNames(m.Graph.Outputs)
	outs := make(values, len(outNames))
	defer outs.destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx.Marshal(m), inNames, outNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(ins, outs); err != nil {
		t.Fatal(err)
	}
	res := make(map[string][]float32)
	for i, v := range outs {
		tv, ok := v.(*ort.Tensor[float32])
		if !ok {
			t.Fatalf("output %s: unexpected %T", outNames[i], v)
		}
		res[outNames[i]] = tv.GetData()
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
		got := runDirect(t, matMulGraph(tc.ta, tc.tb), floats("A", a, aShape...), floats("B", b, bShape...))
		checkClose(t, "Y", got["Y"], want, 0)
	}
}

func TestRunConv(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name             string
		a                accel.Conv2DParams
		bias             bool
		n, c, h, w       int
		oc, kh, kw       int
		wantOutH, wantOW int
	}{
		{"plain", conv2DParams(1, 1, 0, 0, 0, 0, 1, 1, 1), false, 2, 3, 6, 5, 4, 3, 3, 4, 3},
		{"bias", conv2DParams(1, 1, 0, 0, 0, 0, 1, 1, 1), true, 1, 2, 5, 5, 3, 2, 2, 4, 4},
		{"stride_pad_dilation", conv2DParams(2, 1, 1, 2, 0, 1, 1, 2, 1), true, 2, 2, 7, 6, 3, 3, 2, 3, 7},
		{"groups", conv2DParams(1, 2, 1, 1, 1, 1, 2, 1, 2), true, 1, 4, 6, 6, 6, 2, 3, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := tc.c / tc.a.Groups
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
			got := runDirect(t, convGraph(tc.a, tc.bias), feeds...)
			checkClose(t, "Y", got["Y"], want, 0)
		})
	}
}

// refConv is a direct NCHW convolution in float64.
func refConv(x, wt, bias []float32, useBias bool, a accel.Conv2DParams, n, c, h, w, oc, kh, kw int) ([]float64, int, int) {
	sh, sw, dh, dw, g := a.StrideH, a.StrideW, a.DilationH, a.DilationW, a.Groups
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
		a          accel.Pool2DParams
		n, c, h, w int
	}{
		{"2x2", accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}, 2, 3, 6, 8},
		{"3x3_padded", accel.Pool2DParams{KernelH: 3, KernelW: 3, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, 1, 2, 5, 4},
		{"asymmetric", accel.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 1}, 1, 2, 7, 5},
		{"stride_1", accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1}, 1, 1, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Negative inputs: a padded zero must never win the max.
			x := randFloats(r, tc.n*tc.c*tc.h*tc.w, -2, -1)
			a := tc.a
			sh, sw := a.StrideH, a.StrideW
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
			got := runDirect(t, maxPoolGraph(a), floats("X", x, int64(tc.n), int64(tc.c), int64(tc.h), int64(tc.w)))
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
		checkClose(t, "relu", runDirect(t, reluGraph(), floats("X", x, shape...))["Y"], relu, 0)
		checkClose(t, "softmax", runDirect(t, softmaxGraph(), floats("X", x, shape...))["Y"], soft, 0)
		checkClose(t, "add", runDirect(t, addGraph(), floats("X", x, shape...), floats("B", bias, int64(last)))["Y"], add, 0)
	}
}
