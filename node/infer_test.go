package node_test

import (
	"context"
	"errors"
	"github.com/accelnode/accelnode/models/modeltest"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
)

// inferNode opens a node on ref serving the cnn and cast models.
func inferNode(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"cnn": modeltest.CNN(1), "cast": modeltest.Unary("Cast", onnx.Int32, nil, onnx.IntAttr("to", onnx.Float))} {
		path := filepath.Join(dir, name+".onnx")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Models = append(cfg.Models, node.ModelFile{Name: name, Path: path})
	}
	if cfg.Backend == "" {
		cfg.Backend = "ref"
	}
	return open(t, cfg)
}

// modelPath runs the model as a guest's model_run does: its inputs as
// tensors of a session on the backend, models.Model.Run, the outputs read
// back.
func modelPath(t *testing.T, n *node.Node, b accel.Backend, mode accel.Mode, name string, x []float32, shape ...int) [][]float32 {
	t.Helper()
	m, err := n.Models().Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := accel.NewSession(b, mode, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.FromFloat32(x, shape...)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := m.Run(context.Background(), s, []*accel.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]float32
	for _, o := range outs {
		v, err := s.Float32(o)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	return got
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestInfer runs the cnn from the host and checks its outputs bit for bit
// against the model path a guest's model_run takes on the same backend,
// in strict mode, and that a second run gives the same bits and units.
func TestInfer(t *testing.T) {
	n := inferNode(t, node.Config{})
	x := modeltest.Images(3)
	want := modelPath(t, n, n.Backend(), accel.Strict, "cnn", x, 3, 1, 28, 28)
	var first node.InferResult
	for i := range 2 {
		res, err := n.Infer(context.Background(), node.Inference{Model: "cnn", Inputs: []node.Tensor{{Name: "x", DType: accel.F32, Shape: []int{3, 1, 28, 28}, Data: accel.EncodeFloat32(x)}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 2 || res.Outputs[0].Name != "logits" || res.Outputs[1].Name != "probs" {
			t.Fatalf("outputs %+v", res.Outputs)
		}
		for k, o := range res.Outputs {
			if o.DType != accel.F32 || !slices.Equal(o.Shape, []int{3, 10}) {
				t.Errorf("output %s is %s%v", o.Name, o.DType, o.Shape)
			}
			if got := accel.DecodeFloat32(o.Data); !sameBits(got, want[k]) {
				t.Errorf("output %s differs from the model path:\n got %v\nwant %v", o.Name, got, want[k])
			}
		}
		if res.Backend != "ref" || res.Mode != accel.Strict || res.Model != "cnn" || res.ModelSHA256 == "" || res.Units == 0 || res.Elapsed <= 0 {
			t.Errorf("result %+v", res)
		}
		if i == 0 {
			first = res
		} else if res.Units != first.Units {
			t.Errorf("units %d then %d", first.Units, res.Units)
		}
	}

	// The outputs asked for, in the order asked for.
	res, err := n.Infer(context.Background(), node.Inference{Model: first.ModelSHA256, Outputs: []string{"probs"},
		Inputs: []node.Tensor{{Name: "x", DType: accel.F32, Shape: []int{3, 1, 28, 28}, Data: accel.EncodeFloat32(x)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Name != "probs" || !sameBits(accel.DecodeFloat32(res.Outputs[0].Data), want[1]) {
		t.Errorf("probs alone: %+v", res.Outputs)
	}
	if res.Units >= first.Units {
		t.Errorf("reading one output charged %d units, both %d", res.Units, first.Units)
	}
}

// TestInferOtherBackend runs the cnn natively on ONNX Runtime and the cast
// model, which only a native backend runs, with an INT32 input; the cnn is
// charged the same units as on ref.
func TestInferOtherBackend(t *testing.T) {
	n := inferNode(t, node.Config{})
	if st := statusOf(n, "ort"); !st.Available {
		t.Skipf("ort unavailable: %s", st.Reason)
	}
	fast := accel.Fast
	x := modeltest.Images(2)
	in := []node.Tensor{{Name: "x", DType: accel.F32, Shape: []int{2, 1, 28, 28}, Data: accel.EncodeFloat32(x)}}
	onRef, err := n.Infer(context.Background(), node.Inference{Model: "cnn", Inputs: in, Mode: &fast})
	if err != nil {
		t.Fatal(err)
	}
	onORT, err := n.Infer(context.Background(), node.Inference{Model: "cnn", Inputs: in, Backend: "ort", Mode: &fast})
	if err != nil {
		t.Fatal(err)
	}
	if onORT.Backend != "ort" || onORT.Mode != accel.Fast || onORT.Units != onRef.Units {
		t.Errorf("ort: %s in %s mode, %d units; ref %d units", onORT.Backend, onORT.Mode, onORT.Units, onRef.Units)
	}
	b, _ := n.Registry().Lookup("ort")
	want := modelPath(t, n, b, accel.Fast, "cnn", x, 2, 1, 28, 28)
	for k, o := range onORT.Outputs {
		if !sameBits(accel.DecodeFloat32(o.Data), want[k]) {
			t.Errorf("%s differs from the model path on ort", o.Name)
		}
		r := accel.DecodeFloat32(onRef.Outputs[k].Data)
		for i, v := range accel.DecodeFloat32(o.Data) {
			if math.Abs(float64(v-r[i])) > 1e-4*(1+math.Abs(float64(r[i]))) {
				t.Fatalf("%s[%d]: ort %g, ref %g", o.Name, i, v, r[i])
			}
		}
	}

	cast := node.Inference{Model: "cast", Backend: "ort", Mode: &fast,
		Inputs: []node.Tensor{{Name: "x", DType: accel.I32, Shape: []int{3}, Data: accel.EncodeInt32([]int32{-2, 0, 7})}}}
	res, err := n.Infer(context.Background(), cast)
	if err != nil {
		t.Fatal(err)
	}
	if got := accel.DecodeFloat32(res.Outputs[0].Data); !slices.Equal(got, []float32{-2, 0, 7}) {
		t.Errorf("cast gave %v", got)
	}
	if err := n.ModelReady("cast", "ort", &fast); err != nil {
		t.Errorf("cast on ort: %v", err)
	}
	cast.Backend, cast.Mode = "", nil
	if _, err := n.Infer(context.Background(), cast); !errors.Is(err, accel.ErrUnsupported) {
		t.Errorf("cast on ref: %v, want ErrUnsupported", err)
	}
}

func statusOf(n *node.Node, name string) accel.Status {
	for _, st := range n.Backends() {
		if st.Name == name {
			return st
		}
	}
	return accel.Status{Reason: "not registered"}
}

// TestInferRefused checks that every input that does not fit, and every
// limit, is refused with its error, and that the node serves afterwards.
func TestInferRefused(t *testing.T) {
	n := inferNode(t, node.Config{})
	x := accel.EncodeFloat32(modeltest.Images(1))
	good := node.Tensor{Name: "x", DType: accel.F32, Shape: []int{1, 1, 28, 28}, Data: x}
	with := func(f func(*node.Tensor)) []node.Tensor {
		t := good
		f(&t)
		return []node.Tensor{t}
	}
	for _, c := range []struct {
		name  string
		inf   node.Inference
		want  error
		match string
	}{
		{"unknown model", node.Inference{Model: "nope", Inputs: []node.Tensor{good}}, models.ErrNotFound, `"nope"`},
		{"missing input", node.Inference{Model: "cnn"}, accel.ErrInvalid, `input "x" is missing`},
		{"unknown input", node.Inference{Model: "cnn", Inputs: []node.Tensor{good, {Name: "y", DType: accel.F32, Shape: []int{1}, Data: make([]byte, 4)}}}, accel.ErrInvalid, `no input "y"`},
		{"input twice", node.Inference{Model: "cnn", Inputs: []node.Tensor{good, good}}, accel.ErrInvalid, `given twice`},
		{"wrong dtype", node.Inference{Model: "cnn", Inputs: with(func(t *node.Tensor) { t.DType = accel.I32 })}, accel.ErrInvalid, `declares it FLOAT`},
		{"wrong shape", node.Inference{Model: "cnn", Inputs: with(func(t *node.Tensor) { t.Shape = []int{1, 1, 784} })}, accel.ErrShape, `want [batchx1x28x28]`},
		{"short data", node.Inference{Model: "cnn", Inputs: with(func(t *node.Tensor) { t.Data = t.Data[:100] })}, accel.ErrShape, `takes 3136 bytes; 100 given`},
		{"zero dimension", node.Inference{Model: "cnn", Inputs: with(func(t *node.Tensor) { t.Shape = []int{0, 1, 28, 28}; t.Data = nil })}, accel.ErrInvalid, `dimension 0`},
		{"unknown output", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Outputs: []string{"y"}}, accel.ErrInvalid, `no output "y"`},
		{"output twice", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Outputs: []string{"probs", "probs"}}, accel.ErrInvalid, `asked for twice`},
		{"tensor memory", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Limits: node.Limits{TensorMemory: 16 << 10}}, accel.ErrOutOfMemory, ``},
		{"budget", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Limits: node.Limits{Budget: 10_000}}, engine.ErrBudgetExhausted, `of 10000 used`},
		{"deadline", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Limits: node.Limits{Timeout: time.Nanosecond}}, context.DeadlineExceeded, ``},
		{"bad limits", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Limits: node.Limits{Timeout: -1}}, nil, `must not be negative`},
		{"unknown backend", node.Inference{Model: "cnn", Inputs: []node.Tensor{good}, Backend: "abacus"}, accel.ErrNoBackend, `abacus`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.Infer(context.Background(), c.inf)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.match) {
				t.Fatalf("got %v, want %v containing %q", err, c.want, c.match)
			}
		})
	}
	if _, err := n.Infer(context.Background(), node.Inference{Model: "cnn", Inputs: []node.Tensor{good}}); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}

// TestModelInfo checks the metadata and readiness the node reports.
func TestModelInfo(t *testing.T) {
	n := inferNode(t, node.Config{})
	info, err := n.ModelInfo("cnn")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "cnn" || len(info.SHA256) != 64 || len(info.Inputs) != 1 || len(info.Outputs) != 2 {
		t.Fatalf("%+v", info)
	}
	x := info.Inputs[0]
	if x.Name != "x" || x.Type != "FLOAT" || x.DType != accel.F32 || !slices.Equal(x.Shape, []int64{-1, 1, 28, 28}) || !slices.Equal(x.Dims, []string{"batch", "1", "28", "28"}) {
		t.Errorf("input %+v", x)
	}
	if o := info.Outputs[1]; o.Name != "probs" || !slices.Equal(o.Shape, []int64{-1, 10}) {
		t.Errorf("output %+v", o)
	}
	all := n.ModelInfos()
	if len(all) != 2 || all[0].Name != "cast" || all[1].Name != "cnn" || all[0].Inputs[0].Type != "INT32" || all[0].Inputs[0].DType != accel.I32 {
		t.Errorf("ModelInfos: %+v", all)
	}
	if _, err := n.ModelInfo("nope"); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}

	if err := n.ModelReady("cnn", "", nil); err != nil {
		t.Errorf("cnn not ready on ref: %v", err)
	}
	err = n.ModelReady("cast", "", nil)
	if !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), "cannot run on ref") {
		t.Errorf("cast on ref: %v, want unsupported on ref", err)
	}
	if err := n.Ready("", nil); !errors.Is(err, accel.ErrUnsupported) {
		t.Errorf("node with cast on ref ready: %v", err)
	}
	if err := n.ModelReady("nope", "", nil); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("unknown model ready: %v", err)
	}

	// A node holding only models it can run is ready.
	dir := t.TempDir()
	path := filepath.Join(dir, "cnn.onnx")
	if err := os.WriteFile(path, modeltest.CNN(2), 0o644); err != nil {
		t.Fatal(err)
	}
	only := open(t, node.Config{Backend: "ref", Models: []node.ModelFile{{Name: "cnn", Path: path}}})
	if err := only.Ready("", nil); err != nil {
		t.Errorf("ready: %v", err)
	}
}
