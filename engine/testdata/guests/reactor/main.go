// Command reactor is a reactor (built with -buildmode=c-shared) for the
// engine's tests: its methods keep a count in Go memory, grow its memory,
// charge units on the host (the tests' meter module), and fail in each way
// a call can.
package main

import "os"

var (
	count int32
	hoard [][]byte
)

//go:wasmexport inc
func inc() int32 { count++; return count }

//go:wasmexport get
func get() int32 { return count }

//go:wasmexport code
func code() int32 { count++; return 7 }

//go:wasmexport none
func none() {}

//go:wasmexport trap
func trap() { count += 100; panic("trap on purpose") }

//go:wasmexport spin
func spin() {
	for {
		count++
	}
}

//go:wasmexport exit
func exit() { os.Exit(0) }

// grow holds on to 16 MiB more each call.
//
//go:wasmexport grow
func grow() int32 {
	b := make([]byte, 16<<20)
	for i := range b {
		b[i] = byte(i)
	}
	hoard = append(hoard, b)
	return int32(len(hoard))
}

//go:wasmexport add
func add(x int32) int32 { count += x; return count }

//go:wasmimport meter charge
func charge(units int64)

// pay charges 1000 units on the host.
//
//go:wasmexport pay
func pay() { charge(1000); count++ }

func main() {}
