// Command holder creates a tensor, prints its handle, and keeps it until
// its stdin closes, so that a test can run another guest while it holds it.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	t, err := guest.FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(t.Handle())
	io.Copy(io.Discard, os.Stdin)
	v, err := t.Float32()
	fmt.Println(v, err)
}
