package node_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/cuda"
	_ "github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/node"
)

// TestUnitsSameEverywhere runs the example guests on every backend and
// mode that serves here and checks that each is charged the same host
// units everywhere: replicated nodes must charge identically, whatever
// serves them. A whole-model call included. The guest's own instructions
// are charged too, but a guest may do more or less of its own work on one
// backend (it prints what served it, or checks fast results), so they are
// left out of the comparison.
func TestUnitsSameEverywhere(t *testing.T) {
	model := filepath.Join(t.TempDir(), "mlp.onnx")
	if out, err := exec.Command("go", "run", "github.com/accelnode/accelnode/examples/mlp/model", "-o", model).CombinedOutput(); err != nil {
		t.Fatalf("write the example model: %v\n%s", err, out)
	}
	n := open(t, node.Config{Backend: "ref", CheckRate: 0.5, Models: []node.ModelFile{{Name: "mlp", Path: model}}})
	guests := []struct {
		pkg  string
		args []string
	}{
		{"examples/matmul", []string{"-n", "48", "-reps", "1"}},
		{"examples/cnn", []string{"-batch", "3"}},
		{"examples/tsne", []string{"-n", "90", "-iters", "15"}},
		{"examples/mlp", []string{"-batch", "16"}},
	}
	type served struct {
		backend string
		mode    accel.Mode
	}
	var targets []served
	for _, st := range n.Backends() {
		for _, m := range st.Modes {
			if st.Available {
				targets = append(targets, served{st.Name, m})
			}
		}
	}
	if len(targets) < 2 {
		t.Fatalf("only %v serve here", targets)
	}
	for _, g := range guests {
		t.Run(g.pkg, func(t *testing.T) {
			m, _ := compile(t, n, "github.com/accelnode/accelnode/"+g.pkg)
			var first uint64
			var firstAt served
			for i, tg := range targets {
				mode := tg.mode
				res, err := n.Invoke(context.Background(), m, node.Invocation{Args: g.args, Backend: tg.backend, Mode: &mode})
				if err != nil {
					t.Fatalf("%s in %s mode: %v\n%s", tg.backend, tg.mode, err, res.Stderr)
				}
				if res.GuestUnits == 0 || res.GuestUnits >= res.Units {
					t.Fatalf("%s in %s mode: %d units with %d of the guest's own", tg.backend, tg.mode, res.Units, res.GuestUnits)
				}
				host := res.Units - res.GuestUnits
				if i == 0 {
					first, firstAt = host, tg
					continue
				}
				if host != first {
					t.Errorf("%s in %s mode charged %d host units, %s in %s mode %d", tg.backend, tg.mode, host, firstAt.backend, firstAt.mode, first)
				}
			}
			t.Logf("%d host units on each of %d backends and modes", first, len(targets))
		})
	}
}
