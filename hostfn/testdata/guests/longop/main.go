// Command longop asks for one very long host operation, a 4096x4096
// matmul, and prints how that call ended.
package main

import (
	"fmt"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	a, err := guest.New(guest.F32, 4096, 4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = guest.MatMul(a, a, 0)
	fmt.Println("matmul returned:", err)
}
