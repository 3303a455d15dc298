// Command callbench measures the cost of one accel host call from inside
// the guest: -op units (the cheapest call), write (one element into a
// tensor) or relu (a one-element relu and the free of its result, two
// calls). It prints the mean nanoseconds per call.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	op := flag.String("op", "units", "units, write or relu")
	n := flag.Int("n", 100000, "calls")
	flag.Parse()
	t, err := guest.FromFloat32([]float32{-1}, 1)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	one := []float32{2}
	calls := *n
	start := time.Now()
	for i := 0; i < *n && err == nil; i++ {
		switch *op {
		case "units":
			_, _, err = guest.Units()
		case "write":
			err = t.WriteFloat32(0, one)
		case "relu":
			var r guest.Tensor
			if r, err = guest.Relu(t); err == nil {
				err = r.Free()
			}
			calls = 2 * *n
		}
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("%.1f ns/call\n", float64(time.Since(start).Nanoseconds())/float64(calls))
}
