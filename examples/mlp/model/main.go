// Command model writes the example network (examples/internal/mlp) as an
// ONNX file, for `accelnode run --model mlp=FILE`.
//
//	go run ./examples/mlp/model -o bin/mlp.onnx
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/accelnode/accelnode/examples/internal/mlp"
	"github.com/accelnode/accelnode/models/onnx"
)

func main() {
	out := flag.String("o", "mlp.onnx", "output file")
	seed := flag.Uint64("seed", 1, "weight seed; the guest must use the same")
	flag.Parse()
	data := onnx.Marshal(mlp.NewWeights(*seed).Model())
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "model:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%d bytes)\n", *out, len(data))
}
