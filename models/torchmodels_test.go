package models_test

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// The shared fixture testdata/models/mobilenet_v2.onnx is torchvision's
// MobileNetV2 (width 0.5, random weights and BatchNorm statistics from a
// fixed seed) as PyTorch exports it at opset 17, made by
// scripts/export-torch-models.sh; mobilenet_v2.io.ant holds an input and
// PyTorch's float32 output for it, and mobilenet_v2.json the versions that
// made them.
const mobilenetDir = "../testdata/models"

// torchTolerance bounds how far the node's output may lie from PyTorch's:
// max|got − want| / max|want| over the 1000 logits. PyTorch's kernels sum
// in their own orders and fuse products; the contract fixes other orders.
const torchTolerance = 1e-4

// mobilenet loads the fixture and its input and PyTorch's output.
func mobilenet(t *testing.T) (m *models.Model, input, want mnist.Tensor) {
	t.Helper()
	m, err := models.NewRegistry().LoadFile("mobilenet_v2", filepath.Join(mobilenetDir, "mobilenet_v2.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mobilenetDir, "mobilenet_v2.io.ant"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, err := mnist.ReadTensors(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "input" || ts[1].Name != "output" {
		t.Fatalf("mobilenet_v2.io.ant holds %d tensors, want input and output", len(ts))
	}
	if !slices.Equal(ts[0].Shape, []int{1, 3, 224, 224}) || !slices.Equal(ts[1].Shape, []int{1, 1000}) {
		t.Fatalf("fixture shapes %v and %v, want [1 3 224 224] and [1 1000]", ts[0].Shape, ts[1].Shape)
	}
	return m, ts[0], ts[1]
}

// runMobilenet runs the model once on a session of b in mode and returns
// its output.
func runMobilenet(t *testing.T, m *models.Model, b accel.Backend, mode accel.Mode, input mnist.Tensor) []float32 {
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
	if len(outs) != 1 || !slices.Equal(outs[0].Shape(), []int{1, 1000}) {
		t.Fatalf("%s: outputs %v, want one [1 1000]", b.Name(), outs)
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

// TestMobileNetV2Strict runs the exported MobileNetV2 op by op in strict
// mode on ref and on ref-portable: the two give the same bits, and agree
// with PyTorch.
func TestMobileNetV2Strict(t *testing.T) {
	m, input, want := mobilenet(t)
	om, err := onnx.Unmarshal(m.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := models.Compile(om); err != nil {
		t.Fatalf("the model does not compile to accel operations: %v", err)
	}
	simd := runMobilenet(t, m, ref.New(0), accel.Strict, input)
	if e := relErr(simd, want.Data); !(e <= torchTolerance) {
		t.Errorf("ref: max|got − torch| / max|torch| = %.3g, want ≤ %g", e, torchTolerance)
	} else {
		t.Logf("ref against PyTorch: %.3g", e)
	}
	portable := runMobilenet(t, m, ref.NewPortable(0), accel.Strict, input)
	for i := range simd {
		if math.Float32bits(simd[i]) != math.Float32bits(portable[i]) {
			t.Fatalf("output %d: ref %v (%#08x), ref-portable %v (%#08x): strict mode must give the same bits",
				i, simd[i], math.Float32bits(simd[i]), portable[i], math.Float32bits(portable[i]))
		}
	}
}

// TestMobileNetV2ORT runs the exported MobileNetV2 whole on ONNX Runtime in
// fast mode, within the same tolerance of PyTorch.
func TestMobileNetV2ORT(t *testing.T) {
	m, input, want := mobilenet(t)
	b := ort.New(accel.Options{}, false)
	if st := b.Status(); !st.Available {
		t.Skipf("ONNX Runtime is unavailable (make deps fetches it): %s", st.Reason)
	}
	t.Cleanup(func() { b.Close() })
	got := runMobilenet(t, m, b, accel.Fast, input)
	if e := relErr(got, want.Data); !(e <= torchTolerance) {
		t.Errorf("ort: max|got − torch| / max|torch| = %.3g, want ≤ %g", e, torchTolerance)
	} else {
		t.Logf("ort against PyTorch: %.3g", e)
	}
}
