package accel

import "math"

// Compute units meter what a client asks of the node. They are counted from
// shapes alone, never from time, so every replica charges the same: one unit
// per floating-point operation and one per byte moved, plus CallUnits for the
// call itself. Each operation's formula is its Units (ops.go); docs/abi.md
// lists them all.
const CallUnits = 64

func mulSat(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func product(shape []int) uint64 {
	p := uint64(1)
	for _, d := range shape {
		p *= uint64(d)
	}
	return p
}
