package main

import (
	"fmt"
	"strings"

	"github.com/accelnode/accelnode/node"
)

// parseNNPreload reads WasmEdge's --nn-preload NAME:ENCODING:TARGET:PATH,
// so that a WasmEdge command line runs on the node as it is. The node runs
// ONNX graphs (ENCODING ONNX, or AUTO, checked when the file loads) on a
// CPU, GPU or TPU target, or AUTO: the backend that serves the guest.
// PATH may itself hold colons.
func parseNNPreload(spec string) (node.NNGraph, error) {
	f := strings.SplitN(spec, ":", 4)
	if len(f) != 4 || f[0] == "" || f[3] == "" {
		return node.NNGraph{}, fmt.Errorf("--nn-preload: invalid %q (want NAME:ENCODING:TARGET:PATH, such as default:ONNX:CPU:model.onnx)", spec)
	}
	switch strings.ToUpper(f[1]) {
	case "ONNX", "AUTO":
	default:
		return node.NNGraph{}, fmt.Errorf("--nn-preload %s: encoding %q is not served (want ONNX or AUTO)", f[0], f[1])
	}
	switch strings.ToUpper(f[2]) {
	case "CPU", "GPU", "TPU", "AUTO":
	default:
		return node.NNGraph{}, fmt.Errorf("--nn-preload %s: unknown target %q (want CPU, GPU, TPU or AUTO)", f[0], f[2])
	}
	return node.NNGraph{Name: f[0], Path: f[3], Target: strings.ToLower(f[2])}, nil
}

// parseNNGraph reads --nn-graph NAME=PATH.onnx: a preload on target AUTO.
func parseNNGraph(spec string) (node.NNGraph, error) {
	name, path, ok := strings.Cut(spec, "=")
	if !ok || name == "" || path == "" {
		return node.NNGraph{}, fmt.Errorf("--nn-graph: invalid %q (want NAME=PATH.onnx)", spec)
	}
	return node.NNGraph{Name: name, Path: path}, nil
}
