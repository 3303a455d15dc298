package models_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// The shared fixtures under testdata/models are networks as PyTorch
// exports them at opset 17, with random weights from a fixed seed, made by
// scripts/export-torch-models.sh: NAME.onnx, NAME.io.ant with an input and
// PyTorch's float32 output for it, and NAME.json with the versions that
// made them. resnet18_quarter keeps its weights in resnet18_quarter.onnx.data
// beside it, as torch's newer exporter saves every model.
const fixtureDir = "../testdata/models"

// torchModels are the fixtures, with their input and output shapes.
var torchModels = []struct {
	name      string
	in, out   []int
	externals bool // weights in NAME.onnx.data
}{
	{"mobilenet_v2", []int{1, 3, 224, 224}, []int{1, 1000}, false},
	{"resnet18_quarter", []int{1, 3, 224, 224}, []int{1, 1000}, true},
}

// torchTolerance bounds how far the node's output may lie from PyTorch's:
// max|got − want| / max|want| over the outputs. PyTorch's kernels sum in
// their own orders and fuse products; the contract fixes other orders.
const torchTolerance = 1e-4

// torchFixture loads a fixture and its input and PyTorch's output.
func torchFixture(t *testing.T, name string, in, out []int) (m *models.Model, input, want mnist.Tensor) {
	t.Helper()
	m, err := models.NewRegistry().LoadFile(name, filepath.Join(fixtureDir, name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(fixtureDir, name+".io.ant"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, err := mnist.ReadTensors(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "input" || ts[1].Name != "output" {
		t.Fatalf("%s.io.ant holds %d tensors, want input and output", name, len(ts))
	}
	if !slices.Equal(ts[0].Shape, in) || !slices.Equal(ts[1].Shape, out) {
		t.Fatalf("fixture shapes %v and %v, want %v and %v", ts[0].Shape, ts[1].Shape, in, out)
	}
	return m, ts[0], ts[1]
}

// runTorchModel runs the model once on a session of b in mode and returns
// its output.
func runTorchModel(t *testing.T, m *models.Model, b accel.Backend, mode accel.Mode, input mnist.Tensor, out []int) []float32 {
	t.Helper()
	s := session(t, b, mode, nil)
	x, err := s.NewTensor(accel.F32, input.Shape)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(x, 0, accel.EncodeFloat32(input.Data)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	outs, err := m.Run(ctx, s, []*accel.Tensor{x})
	if err != nil {
		t.Fatalf("%s, %s: %v", b.Name(), mode, err)
	}
	t.Logf("%s, %s: %v", b.Name(), mode, time.Since(start).Round(time.Millisecond))
	if len(outs) != 1 || !slices.Equal(outs[0].Shape(), out) {
		t.Fatalf("%s: outputs %v, want one %v", b.Name(), outs, out)
	}
	data := make([]byte, outs[0].Bytes())
	if err := s.Read(outs[0], 0, data); err != nil {
		t.Fatal(err)
	}
	return accel.DecodeFloat32(data)
}

// relErr is max|got − want| / max|want|; NaN or ±Inf anywhere in got makes
// it +Inf.
func relErr(got, want []float32) float64 {
	var diff, scale float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if g != g || g-g != 0 {
			return math.Inf(1)
		}
		diff, scale = max(diff, math.Abs(g-w)), max(scale, math.Abs(w))
	}
	return diff / scale
}

// TestTorchModelsStrict runs each exported network op by op in strict
// mode on ref and on ref-portable: the two give the same bits, and agree
// with PyTorch.
func TestTorchModelsStrict(t *testing.T) {
	for _, tm := range torchModels {
		t.Run(tm.name, func(t *testing.T) {
			m, input, want := torchFixture(t, tm.name, tm.in, tm.out)
			om, err := onnx.Unmarshal(m.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := models.Compile(om); err != nil {
				t.Fatalf("the model does not compile to accel operations: %v", err)
			}
			simd := runTorchModel(t, m, ref.New(0), accel.Strict, input, tm.out)
			if e := relErr(simd, want.Data); !(e <= torchTolerance) {
				t.Errorf("ref: max|got − torch| / max|torch| = %.3g, want ≤ %g", e, torchTolerance)
			} else {
				t.Logf("ref against PyTorch: %.3g", e)
			}
			portable := runTorchModel(t, m, ref.NewPortable(0), accel.Strict, input, tm.out)
			for i := range simd {
				if math.Float32bits(simd[i]) != math.Float32bits(portable[i]) {
					t.Fatalf("output %d: ref %v (%#08x), ref-portable %v (%#08x): strict mode must give the same bits",
						i, simd[i], math.Float32bits(simd[i]), portable[i], math.Float32bits(portable[i]))
				}
			}
		})
	}
}

// TestTorchModelsORT runs each exported network whole on ONNX Runtime in
// fast mode, within the same tolerance of PyTorch. ONNX Runtime gets the
// registry's bytes, so a model saved with external data reaches it with
// its weights inside.
func TestTorchModelsORT(t *testing.T) {
	b := ort.New(accel.Options{}, false)
	if st := b.Status(); !st.Available {
		t.Skipf("ONNX Runtime is unavailable (make deps fetches it): %s", st.Reason)
	}
	t.Cleanup(func() { b.Close() })
	for _, tm := range torchModels {
		t.Run(tm.name, func(t *testing.T) {
			m, input, want := torchFixture(t, tm.name, tm.in, tm.out)
			got := runTorchModel(t, m, b, accel.Fast, input, tm.out)
			if e := relErr(got, want.Data); !(e <= torchTolerance) {
				t.Errorf("ort: max|got − torch| / max|torch| = %.3g, want ≤ %g", e, torchTolerance)
			} else {
				t.Logf("ort against PyTorch: %.3g", e)
			}
		})
	}
}

// TestExternalDataNeedsItsFile: the exported model whose weights lie
// beside it loads from its file, and the same bytes passed alone (an
// upload, a guest's model) are refused with the reason; so is the model
// copied away from its data.
func TestExternalDataNeedsItsFile(t *testing.T) {
	path := filepath.Join(fixtureDir, "resnet18_quarter.onnx")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := models.NewRegistry()
	_, err = r.Add("resnet", data)
	if !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), `refers to external data in "resnet18_quarter.onnx.data"`) {
		t.Errorf("Add of the bare model: %v, want it refused for its external data", err)
	}
	if _, _, err := r.Intern(data); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), "external data") {
		t.Errorf("Intern of the bare model: %v, want it refused for its external data", err)
	}
	alone := filepath.Join(t.TempDir(), "resnet18_quarter.onnx")
	if err := os.WriteFile(alone, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadFile("resnet", alone); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("LoadFile away from its data: %v, want no such file", err)
	}
	m, err := r.LoadFile("resnet", path)
	if err != nil {
		t.Fatal(err)
	}
	om, err := onnx.Unmarshal(m.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if e := om.FirstExternal(); e != nil {
		t.Errorf("the loaded model's tensor %q still refers to external data", e.Name)
	}
	// Its bytes are the model to send elsewhere: they load alone.
	if _, err := models.NewRegistry().Add("copy", m.Bytes); err != nil {
		t.Errorf("the loaded model's bytes do not load alone: %v", err)
	}
}

// BenchmarkTorchModels runs each exported network at batch 1 and 32 in
// strict mode on ref and whole on ONNX Runtime in fast mode, both with
// one thread per core, side by side:
//
//	go test -run '^$' -bench TorchModels -benchtime 10x ./models
//
// A run's session and the model's compiled program (ONNX Runtime's
// session) are made before the timer starts.
func BenchmarkTorchModels(b *testing.B) {
	backends := []struct {
		b    accel.Backend
		mode accel.Mode
	}{{ref.New(0), accel.Strict}}
	if o := ort.New(accel.Options{}, false); o.Status().Available {
		backends = append(backends, struct {
			b    accel.Backend
			mode accel.Mode
		}{o, accel.Fast})
		b.Cleanup(func() { o.Close() })
	}
	for _, tm := range torchModels {
		m, err := models.NewRegistry().LoadFile(tm.name, filepath.Join(fixtureDir, tm.name+".onnx"))
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 32} {
			shape := append([]int{batch}, tm.in[1:]...)
			x := make([]float32, product(shape))
			r := rand.New(rand.NewPCG(1, uint64(batch)))
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for _, be := range backends {
				b.Run(fmt.Sprintf("%s/batch=%d/%s", tm.name, batch, be.b.Name()), func(b *testing.B) {
					s := session(b, be.b, be.mode, nil)
					in, err := s.FromFloat32(x, shape...)
					if err != nil {
						b.Fatal(err)
					}
					run := func() {
						outs, err := m.Run(ctx, s, []*accel.Tensor{in})
						if err != nil {
							b.Fatal(err)
						}
						for _, o := range outs {
							s.Free(o)
						}
					}
					run() // the first run compiles
					b.ResetTimer()
					for range b.N {
						run()
					}
					b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
					b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "images/s")
				})
			}
		}
	}
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
