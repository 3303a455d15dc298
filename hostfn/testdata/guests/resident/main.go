//go:build wasip1

// Command resident measures a guest's matmul on tensors that stay on the
// backend: A and B are uploaded once, then each repetition is one matmul host
// call (and the free of its result), timed by the guest. It prints the median
// call time, so the cost of the host-call layer can be set against the
// kernel's own time.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	n := flag.Int("n", 256, "matrix size")
	reps := flag.Int("reps", 10, "timed calls")
	flag.Parse()
	if err := run(*n, *reps); err != nil {
		fmt.Fprintln(os.Stderr, "resident:", err)
		os.Exit(1)
	}
}

func run(n, reps int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]float32, n*n)
	for i := range data {
		data[i] = rng.Float32()*2 - 1
	}
	a, err := guest.FromFloat32(data, n, n)
	if err != nil {
		return err
	}
	b, err := guest.FromFloat32(data, n, n)
	if err != nil {
		return err
	}
	call := func() (time.Duration, error) {
		start := time.Now()
		c, err := guest.MatMul(a, b, 0)
		if err != nil {
			return 0, err
		}
		elapsed := time.Since(start)
		return elapsed, c.Free()
	}
	if _, err := call(); err != nil { // warm-up: kernel compilation, pools
		return err
	}
	times := make([]time.Duration, reps)
	for i := range times {
		if times[i], err = call(); err != nil {
			return err
		}
	}
	slices.Sort(times)
	fmt.Printf("resident matmul: %.4f ms\n", float64(times[len(times)/2].Nanoseconds())/1e6)
	return guest.FreeAll(a, b)
}
