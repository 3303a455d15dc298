package node

import (
	"fmt"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/hostfn"
)

// NNGraph is an ONNX model preloaded for wasi-nn guests, as WasmEdge's
// --nn-preload does: loadable by name with load_by_name, and also by
// accel's model_open, since it joins the node's models.
type NNGraph struct {
	Name, Path string
	// Target is the execution target its graphs run on: "cpu", "gpu" or
	// "tpu"; empty or "auto" means the backend that serves the guest.
	Target string
}

// loadNNGraphs loads cfg.NNGraphs beside the models and checks that a
// backend serves each target in the node's mode, so that a preload no
// backend can run stops the node from starting rather than fail guests.
func (n *Node) loadNNGraphs() error {
	for _, g := range n.cfg.NNGraphs {
		target := strings.ToLower(g.Target)
		switch target {
		case "", hostfn.TargetAuto:
			target = ""
		case hostfn.TargetCPU, hostfn.TargetGPU, hostfn.TargetTPU:
			if _, err := n.nnBackend(n.backend, n.cfg.Mode)(target); err != nil {
				return fmt.Errorf("wasi-nn graph %s: target %s: %w", g.Name, target, err)
			}
		default:
			return fmt.Errorf("wasi-nn graph %s: unknown target %q (want cpu, gpu, tpu or auto)", g.Name, g.Target)
		}
		if err := n.loadModel(ModelFile{Name: g.Name, Path: g.Path}); err != nil {
			return err
		}
		if target != "" {
			if n.nnTargets == nil {
				n.nnTargets = map[string]string{}
			}
			n.nnTargets[g.Name] = target
		}
	}
	return nil
}

// nnBackend returns what serves a wasi-nn execution target for a guest
// served by own in mode: own where it computes on that target, else the
// fastest backend of the registry on that target that serves mode, in
// checked mode checked as own is. The mode never changes with the target.
func (n *Node) nnBackend(own accel.Backend, mode accel.Mode) func(target string) (accel.Backend, error) {
	return func(target string) (accel.Backend, error) {
		if n.targetOf(own) == target {
			return own, nil
		}
		var best accel.Backend
		var reasons []string
		for _, b := range n.registry.Backends() {
			if hostfn.BackendTarget(b) != target {
				continue
			}
			st := b.Status()
			switch {
			case !st.Available:
				reasons = append(reasons, fmt.Sprintf("%s is unavailable: %s", b.Name(), st.Reason))
			case !st.Serves(mode):
				reasons = append(reasons, fmt.Sprintf("%s does not serve %s mode", b.Name(), mode))
			case best == nil || st.Speed > best.Status().Speed:
				best = b
			}
		}
		if best == nil {
			if len(reasons) == 0 {
				reasons = append(reasons, "the node has no "+target+" backend")
			}
			return nil, fmt.Errorf("%w: %s", accel.ErrNoBackend, strings.Join(reasons, "; "))
		}
		return n.serving(best.Name(), mode)
	}
}

// targetOf is the target b computes on, seeing through checked mode's
// wrapper to the registry's backend of the same name.
func (n *Node) targetOf(b accel.Backend) string {
	if rb, ok := n.registry.Lookup(b.Name()); ok {
		b = rb
	}
	return hostfn.BackendTarget(b)
}
