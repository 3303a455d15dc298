//go:build wasip1

// Command mnist is an example guest that classifies the 10,000 MNIST test
// digits with a trained model the node holds (examples/mnist-train, then
// examples/mnist/model), one model_run per batch, and prints the accuracy,
// the confusion matrix and the images per second.
//
//	accelnode run --model mnist=bin/mnist.onnx --dir .deps/mnist:/data:ro bin/examples/mnist.wasm
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/hostfn/guest"
	"github.com/accelnode/accelnode/mnist"
)

func main() {
	data := flag.String("data", "/data", "directory holding the MNIST files")
	model := flag.String("model", "mnist", "name of the model on the node")
	batch := flag.Int("batch", 256, "images per model_run")
	count := flag.Int("n", 10000, "test images classified")
	flag.Parse()
	if err := run(*data, *model, *batch, *count); err != nil {
		fmt.Fprintln(os.Stderr, "mnist:", err)
		os.Exit(1)
	}
}

func run(data, name string, batch, count int) error {
	if batch < 1 || count < 1 {
		return fmt.Errorf("-batch and -n must be positive")
	}
	test, err := mnist.Load(data, "t10k")
	if err != nil {
		return err
	}
	count = min(count, test.N)
	m, err := guest.OpenModel(name)
	if err != nil {
		return err
	}
	info, err := guest.Info()
	if err != nil {
		return err
	}
	const side = mnistnet.Side * mnistnet.Side
	x := make([]float32, batch*side)
	probs := make([]float32, batch*mnistnet.Classes)
	var confusion [mnistnet.Classes][mnistnet.Classes]int
	correct := 0
	var busy time.Duration // model runs and the copies in and out
	for first := 0; first < count; first += batch {
		b := min(batch, count-first)
		mnistnet.Pixels(x[:b*side], test.Images[first*side:(first+b)*side])
		start := time.Now()
		xt, err := guest.FromFloat32(x[:b*side], b, 1, mnistnet.Side, mnistnet.Side)
		if err != nil {
			return err
		}
		out, err := m.Run(2, xt)
		xt.Free()
		if err != nil {
			return err
		}
		err = out[1].ReadFloat32(0, probs[:b*mnistnet.Classes])
		guest.FreeAll(out...)
		if err != nil {
			return err
		}
		busy += time.Since(start)
		for i := range b {
			p := probs[i*mnistnet.Classes : (i+1)*mnistnet.Classes]
			guess, label := 0, int(test.Labels[first+i])
			for c, v := range p {
				if v > p[guess] {
					guess = c
				}
			}
			confusion[label][guess]++
			if guess == label {
				correct++
			}
		}
	}
	fmt.Printf("mnist: %d test digits, batch %d, on %s (%s mode)\n", count, batch, info.Backend, info.Mode)
	fmt.Printf("accuracy %.2f%% (%d of %d), %.0f images/s\n", 100*float64(correct)/float64(count), correct, count, float64(count)/busy.Seconds())
	fmt.Println("confusion matrix (rows: true digit, columns: predicted):")
	fmt.Print("     ")
	for c := range mnistnet.Classes {
		fmt.Printf("%6d", c)
	}
	fmt.Println()
	for l, row := range confusion {
		fmt.Printf("%4d ", l)
		for _, n := range row {
			fmt.Printf("%6d", n)
		}
		fmt.Println()
	}
	return nil
}
