// Command longsoftmax asks for the softmax of one very long row, call after
// call, until it has made -reps calls or is stopped, and prints how the
// last call ended. A row of 2^28 elements holds 1 GiB in and 1 GiB out.
package main

import (
	"flag"
	"fmt"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	n := flag.Int("n", 1<<28, "elements in the row")
	reps := flag.Int("reps", 0, "calls to make; 0 means until stopped")
	flag.Parse()
	x, err := guest.New(guest.F32, 1, *n)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := 0; *reps == 0 || i < *reps; i++ {
		y, err := guest.Softmax(x)
		if err != nil {
			fmt.Printf("softmax %d returned: %v\n", i+1, err)
			return
		}
		if err := y.Free(); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Printf("%d softmax calls done\n", *reps)
}
