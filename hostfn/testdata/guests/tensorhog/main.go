// Command tensorhog makes the node hold as much as a guest's limits allow:
// it fills its own memory, runs matmuls on resident tensors (whose kernels
// may use scratch memory), then creates and writes tensors until the
// tensor-memory limit refuses one. It prints what it managed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	memMiB := flag.Int("mem", 32, "MiB of its own memory to fill")
	n := flag.Int("n", 1024, "size of the square matmul operands")
	reps := flag.Int("reps", 2, "matmuls to run")
	flag.Parse()

	// Its own memory, touched page by page.
	own := make([]byte, *memMiB<<20)
	for i := range own {
		own[i] = byte(i)
	}

	chunk := make([]float32, 1<<20) // 4 MiB of data to write from
	for i := range chunk {
		chunk[i] = float32(i%97) / 97
	}
	fill := func(t guest.Tensor, elems int) error {
		for first := 0; first < elems; first += len(chunk) {
			if err := t.WriteFloat32(first, chunk[:min(len(chunk), elems-first)]); err != nil {
				return err
			}
		}
		return nil
	}
	a, err := guest.New(guest.F32, *n, *n)
	if err != nil {
		fail(err)
	}
	b, err := guest.New(guest.F32, *n, *n)
	if err != nil {
		fail(err)
	}
	if err := errors.Join(fill(a, *n**n), fill(b, *n**n)); err != nil {
		fail(err)
	}
	for range *reps {
		c, err := guest.MatMul(a, b, 0)
		if err != nil {
			fail(err)
		}
		c.Free()
	}
	// Then tensors of 8 MiB, written, until the limit refuses one.
	held := 0
	for {
		t, err := guest.New(guest.F32, 2<<20)
		if errors.Is(err, abi.ENOMEM) {
			break
		}
		if err != nil {
			fail(err)
		}
		if err := fill(t, 2<<20); err != nil {
			fail(err)
		}
		held++
	}
	fmt.Printf("filled %d MiB of memory, ran %d matmuls of %d, then held %d tensors of 8 MiB (checksum %d)\n", *memMiB, *reps, *n, held, own[len(own)-1])
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tensorhog:", err)
	os.Exit(1)
}
