// Command budget multiplies matrices until the node refuses, then prints
// the errno it got and the units it used, and tries one cheap call more.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	a, err := guest.New(guest.F32, 64, 64)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		c, err := guest.MatMul(a, a, 0)
		if errors.Is(err, abi.EBUDGET) {
			used, budget, _ := guest.Units()
			fmt.Printf("refused after %d matmuls: %v; used %d of %d\n", i, err, used, budget)
			// The budget stays exhausted, even for a call that would fit.
			fmt.Println("then free:", a.Free())
			return
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Free()
	}
}
