package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
)

func TestParseNNFlags(t *testing.T) {
	tests := []struct {
		flag, spec string
		want       node.NNGraph
		err        string
	}{
		{"nn-preload", "default:ONNX:CPU:model.onnx", node.NNGraph{Name: "default", Path: "model.onnx", Target: "cpu"}, ""},
		{"nn-preload", "m:onnx:gpu:/models/m.onnx", node.NNGraph{Name: "m", Path: "/models/m.onnx", Target: "gpu"}, ""},
		{"nn-preload", "m:AUTO:AUTO:C:/m.onnx", node.NNGraph{Name: "m", Path: "C:/m.onnx", Target: "auto"}, ""},
		{"nn-preload", "m:ONNX:TPU:m.onnx", node.NNGraph{Name: "m", Path: "m.onnx", Target: "tpu"}, ""},
		{"nn-preload", "default:GGML:AUTO:llama.gguf", node.NNGraph{}, `encoding "GGML" is not served`},
		{"nn-preload", "m:ONNX:NPU:m.onnx", node.NNGraph{}, `unknown target "NPU"`},
		{"nn-preload", "m:ONNX:CPU", node.NNGraph{}, "want NAME:ENCODING:TARGET:PATH"},
		{"nn-preload", ":ONNX:CPU:m.onnx", node.NNGraph{}, "want NAME:ENCODING:TARGET:PATH"},
		{"nn-preload", "m:ONNX:CPU:", node.NNGraph{}, "want NAME:ENCODING:TARGET:PATH"},
		{"nn-graph", "default=model.onnx", node.NNGraph{Name: "default", Path: "model.onnx"}, ""},
		{"nn-graph", "default", node.NNGraph{}, "want NAME=PATH.onnx"},
		{"nn-graph", "=model.onnx", node.NNGraph{}, "want NAME=PATH.onnx"},
	}
	for _, tc := range tests {
		t.Run(tc.flag+" "+tc.spec, func(t *testing.T) {
			parse := parseNNPreload
			if tc.flag == "nn-graph" {
				parse = parseNNGraph
			}
			got, err := parse(tc.spec)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRunNNPreload runs a wasi-nn guest as WasmEdge's command line would,
// and checks that a preload no backend serves stops the run.
func TestRunNNPreload(t *testing.T) {
	guest := guesttest.Path(t, "github.com/accelnode/accelnode/hostfn/testdata/guests/wasinn")
	model := filepath.Join(t.TempDir(), "relu.onnx")
	if err := os.WriteFile(model, modeltest.Unary("Relu", onnx.Float, modeltest.Batch4), 0o600); err != nil {
		t.Fatal(err)
	}
	guestArgs := []string{"--", "-name", "default", "-accel", "", "-width", "4"}
	for _, flags := range [][]string{
		{"--nn-preload", "default:ONNX:CPU:" + model},
		{"--nn-preload", "default:AUTO:AUTO:" + model},
		{"--nn-graph", "default=" + model},
		{"--model", "default=" + model},
	} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			args := append(append([]string{"run", "--cache-dir", "off"}, flags...), guest)
			stdout, stderr, err := accelnode(t, append(args, guestArgs...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if n := strings.Count(stdout, "nn y "); n != 8 {
				t.Errorf("%d output values, want 8:\n%s", n, stdout)
			}
		})
	}
	_, _, err := accelnode(t, "run", "--cache-dir", "off", "--nn-preload", "default:ONNX:TPU:"+model, guest)
	if err == nil || !strings.Contains(err.Error(), "wasi-nn graph default: target tpu: no backend") {
		t.Errorf("a TPU preload: error %v, want one saying no backend serves it", err)
	}
	_, _, err = accelnode(t, "run", "--nn-preload", "default:GGML:AUTO:llama.gguf", guest)
	if err == nil || !strings.Contains(err.Error(), `encoding "GGML" is not served`) {
		t.Errorf("a GGML preload: error %v", err)
	}
}
