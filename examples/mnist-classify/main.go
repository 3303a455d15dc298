//go:build wasip1

// Command mnist-classify is an example guest that classifies one digit read
// from stdin with the MNIST model the node holds (examples/mnist/model), one
// model_run, and prints the ten class probabilities as JSON. The node's web
// page sends it the digits people draw.
//
// Stdin is one 28×28 image as MNIST stores it: 784 bytes, row after row, 0
// the background and 255 the ink. Stdout is one line:
//
//	{"digit":7,"probabilities":[0.0001,...],"model":"mnist","backend":"ref","mode":"strict"}
//
// The probabilities are the model's output named "probs" where it has one,
// and otherwise the softmax of its first output.
//
//	accelnode run --model mnist=bin/mnist.onnx bin/examples/mnist-classify.wasm < digit.raw
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/hostfn/guest"
)

// answer is what the guest prints.
type answer struct {
	Digit         int       `json:"digit"`
	Probabilities []float32 `json:"probabilities"`
	Model         string    `json:"model"`
	Backend       string    `json:"backend"`
	Mode          string    `json:"mode"`
}

func main() {
	model := flag.String("model", "mnist", "name of the model on the node")
	flag.Parse()
	if err := run(*model); err != nil {
		fmt.Fprintln(os.Stderr, "mnist-classify:", err)
		os.Exit(1)
	}
}

func run(name string) error {
	const side = mnistnet.Side * mnistnet.Side
	img, err := io.ReadAll(io.LimitReader(os.Stdin, side+1))
	if err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	if len(img) != side {
		return fmt.Errorf("stdin: want one %d×%d image, %d bytes, got %d", mnistnet.Side, mnistnet.Side, side, len(img))
	}
	m, err := guest.OpenModel(name)
	if err != nil {
		return fmt.Errorf("model %q: %w", name, err)
	}
	mi, err := m.Info()
	if err != nil {
		return err
	}
	if len(mi.Outputs) == 0 {
		return fmt.Errorf("model %q has no outputs", name)
	}
	out, soft := 0, true // the first output, softmax taken here
	for i, o := range mi.Outputs {
		if o.Name == "probs" {
			out, soft = i, false
		}
	}
	info, err := guest.Info()
	if err != nil {
		return err
	}
	x := make([]float32, side)
	mnistnet.Pixels(x, img)
	xt, err := guest.FromFloat32(x, 1, 1, mnistnet.Side, mnistnet.Side)
	if err != nil {
		return err
	}
	outs, err := m.Run(len(mi.Outputs), xt)
	xt.Free()
	if err != nil {
		return err
	}
	p := make([]float32, mnistnet.Classes)
	err = outs[out].ReadFloat32(0, p)
	guest.FreeAll(outs...)
	if err != nil {
		return fmt.Errorf("model %q: output %q: want %d classes: %w", name, mi.Outputs[out].Name, mnistnet.Classes, err)
	}
	if soft {
		softmax(p)
	}
	a := answer{Probabilities: p, Model: name, Backend: info.Backend, Mode: info.Mode}
	for c, v := range p {
		if math.IsNaN(float64(v)) {
			return errors.New("the model's output is not a number")
		}
		if v > p[a.Digit] {
			a.Digit = c
		}
	}
	return json.NewEncoder(os.Stdout).Encode(a)
}

// softmax turns logits z into probabilities: p_i = exp(z_i − max z) / Σ_j exp(z_j − max z).
func softmax(z []float32) {
	top := z[0]
	for _, v := range z {
		top = max(top, v)
	}
	sum := 0.0
	e := make([]float64, len(z))
	for i, v := range z {
		e[i] = math.Exp(float64(v - top))
		sum += e[i]
	}
	for i := range z {
		z[i] = float32(e[i] / sum)
	}
}
