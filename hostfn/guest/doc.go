// Package guest is the Go binding of the accel ABI for guests built with
// GOOS=wasip1 GOARCH=wasm and run by accelnode.
//
// Tensors are handles to data the node keeps on its backend, possibly in GPU
// memory, so a chain of operations moves data only at the ends:
//
//	a, _ := guest.FromFloat32(aData, m, k)
//	b, _ := guest.FromFloat32(bData, k, n)
//	c, err := guest.MatMul(a, b, 0)
//	out, _ := c.Float32()
//
// The slice-in, slice-out helpers (MatMulF32 and the like) do all of that in
// one call. Every error is an *Error that carries the ABI errno and the
// node's explanation; errors.Is(err, abi.ESHAPE) tests the errno.
//
// The package compiles to nothing on other targets.
package guest
