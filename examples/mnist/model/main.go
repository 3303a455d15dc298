// Command model turns the weights examples/mnist-train wrote into an ONNX
// model of the network (examples/internal/mnistnet), for
// `accelnode run --model mnist=FILE` and `accelnode serve`.
//
//	go run ./examples/mnist/model -weights bin/mnist-weights.ant -o bin/mnist.onnx
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models/onnx"
)

func main() {
	weights := flag.String("weights", "mnist-weights.ant", "the weights examples/mnist-train wrote")
	out := flag.String("o", "mnist.onnx", "output file")
	flag.Parse()
	if err := export(*weights, *out); err != nil {
		fmt.Fprintln(os.Stderr, "model:", err)
		os.Exit(1)
	}
}

func export(weights, out string) error {
	f, err := os.Open(weights)
	if err != nil {
		return err
	}
	defer f.Close()
	ts, err := mnist.ReadTensors(f)
	if err != nil {
		return fmt.Errorf("%s: %w", weights, err)
	}
	m, err := mnistnet.Model(ts)
	if err != nil {
		return fmt.Errorf("%s: %w", weights, err)
	}
	data := onnx.Marshal(m)
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d bytes)\n", out, len(data))
	return nil
}
