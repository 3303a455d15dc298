package node_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
)

const nnGuest = "github.com/accelnode/accelnode/hostfn/testdata/guests/wasinn"

// TestNNGraphs opens nodes with preloaded wasi-nn graphs: a guest loads
// one by name and runs it, and a preload whose target no backend serves
// stops the node from opening.
func TestNNGraphs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relu.onnx")
	if err := os.WriteFile(path, modeltest.Unary("Relu", onnx.Float, modeltest.Batch4), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target, err string // err: what Open's error says, or "" for success
		// mayServe: a GPU machine may serve the target after all.
		mayServe bool
	}{
		{"cpu", "", false},
		{"CPU", "", false},
		{"auto", "", false},
		{"", "", false},
		{"gpu", "target gpu: no backend", true}, // no CUDA, or one that does not serve strict mode
		{"tpu", "target tpu: no backend", false},
		{"npu", `unknown target "npu"`, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("target %q", tc.target), func(t *testing.T) {
			cfg := node.Config{Backend: "ref", CacheDir: guesttest.CacheDir(), NNGraphs: []node.NNGraph{{Name: "default", Path: path, Target: tc.target}}}
			n, err := node.Open(context.Background(), cfg)
			if tc.err != "" && !(tc.mayServe && err == nil) {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Open = %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			m, _ := compile(t, n, nnGuest)
			res, err := n.Invoke(context.Background(), m, node.Invocation{Args: []string{"-name", "default", "-accel", "", "-width", "4"}, Stdin: bytes.NewReader(nil)})
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Stderr)
			}
			var got int
			for _, line := range strings.Split(string(res.Stdout), "\n") {
				var i int
				var bits uint32
				if _, err := fmt.Sscanf(line, "nn y %d %v", &i, &bits); err != nil {
					continue
				}
				if want := float32(max(math.Sin(float64(i)), 0)); math.Float32frombits(bits) != want {
					t.Errorf("y[%d] = %v, want relu(sin(%d)) = %v", i, math.Float32frombits(bits), i, want)
				}
				got++
			}
			if got != 8 {
				t.Errorf("%d outputs, want 8:\n%s", got, res.Stdout)
			}
		})
	}
}
