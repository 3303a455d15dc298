//go:build wasip1

// Command mlp is an example guest for whole-model calls: it opens the model
// the node loaded (accelnode run --model mlp=FILE), runs a batch through it
// with one model_run call, and checks the answer against the same network
// computed with the node's single ops (matmul, add_bias, relu, softmax) from
// the same weights: bit for bit in strict mode.
//
//	accelnode run --model mlp=bin/mlp.onnx bin/examples/mlp.wasm -- -batch 16
package main

import (
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/accelnode/accelnode/examples/internal/mlp"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	name := flag.String("model", "mlp", "name the model was loaded under")
	batch := flag.Int("batch", 16, "inputs per run")
	seed := flag.Uint64("seed", 1, "weight seed the model was written with")
	flag.Parse()
	if err := run(*name, *batch, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mlp:", err)
		os.Exit(1)
	}
}

func run(name string, batch int, seed uint64) error {
	info, err := guest.Info()
	if err != nil {
		return err
	}
	m, err := guest.OpenModel(name)
	if err != nil {
		return err
	}
	mi, err := m.Info()
	if err != nil {
		return err
	}
	fmt.Printf("model %s (sha256 %.12s…) on %s (%s mode): input %s %v %v, output %s %v\n",
		mi.Name, mi.SHA256, info.Backend, info.Mode, mi.Inputs[0].Name, mi.Inputs[0].Dims, mi.Inputs[0].DType, mi.Outputs[0].Name, mi.Outputs[0].Dims)

	x, err := guest.FromFloat32(mlp.Input(batch), batch, mlp.In)
	if err != nil {
		return err
	}
	outs, err := m.Run(1, x)
	if err != nil {
		return err
	}
	probs, err := outs[0].Float32()
	if err != nil {
		return err
	}
	want, err := byOps(x, mlp.NewWeights(seed))
	if err != nil {
		return err
	}
	if err := guest.FreeAll(x, outs[0]); err != nil {
		return err
	}

	same, worst := 0, 0.0
	for i := range want {
		if math.Float32bits(probs[i]) == math.Float32bits(want[i]) {
			same++
		}
		worst = math.Max(worst, math.Abs(float64(probs[i]-want[i])))
	}
	fmt.Printf("model_run: batch %d, classes of the first rows %v\n", batch, argmax(probs, min(batch, 8)))
	fmt.Printf("against the same network by single ops: %d of %d outputs bit-identical, max |diff| %.3g\n", same, len(want), worst)
	if info.Deterministic && same != len(want) {
		return fmt.Errorf("strict mode, yet the model's outputs differ from the single ops'")
	}
	if worst > 1e-5 {
		return fmt.Errorf("the model's outputs differ from the single ops' by %g", worst)
	}
	return nil
}

// byOps computes the network with single host calls: relu(x·W1 + b1)·W2 +
// b2, then softmax.
func byOps(x guest.Tensor, w mlp.Weights) ([]float32, error) {
	var live []guest.Tensor
	defer func() { guest.FreeAll(live...) }()
	keep := func(t guest.Tensor, err error) (guest.Tensor, error) {
		if err == nil {
			live = append(live, t)
		}
		return t, err
	}
	w1, err := keep(guest.FromFloat32(w.W1, mlp.In, mlp.Hidden))
	if err != nil {
		return nil, err
	}
	b1, err := keep(guest.FromFloat32(w.B1, mlp.Hidden))
	if err != nil {
		return nil, err
	}
	w2, err := keep(guest.FromFloat32(w.W2, mlp.Hidden, mlp.Out))
	if err != nil {
		return nil, err
	}
	b2, err := keep(guest.FromFloat32(w.B2, mlp.Out))
	if err != nil {
		return nil, err
	}
	h, err := keep(guest.MatMul(x, w1, 0))
	if err != nil {
		return nil, err
	}
	if h, err = keep(guest.AddBias(h, b1, 1)); err != nil {
		return nil, err
	}
	if h, err = keep(guest.Relu(h)); err != nil {
		return nil, err
	}
	if h, err = keep(guest.MatMul(h, w2, 0)); err != nil {
		return nil, err
	}
	if h, err = keep(guest.AddBias(h, b2, 1)); err != nil {
		return nil, err
	}
	if h, err = keep(guest.Softmax(h)); err != nil {
		return nil, err
	}
	return h.Float32()
}

func argmax(p []float32, rows int) []int {
	out := make([]int, rows)
	for r := range rows {
		row := p[r*mlp.Out : (r+1)*mlp.Out]
		for j, v := range row {
			if v > row[out[r]] {
				out[r] = j
			}
		}
	}
	return out
}
