//go:build wasip1

// Command counter-actor is an example actor: a reactor guest whose state
// stays on the node between calls. It counts its calls in Go memory and
// adds the four floats of each payload to a tensor it keeps on the node's
// backend (on the GPU where the backend is one). Build it as a reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o counter-actor.wasm ./examples/counter-actor
//
// Methods (payloads and replies little-endian):
//
//	add     payload 4 × f32: sum += payload; count++; reply count (u64)
//	get     reply count (u64), then sum (4 × f32)
//	order   reply the first float of every add's payload so far, in order (f32 each)
//	echo    reply the payload
//	fail    count++, reply "failed on purpose", return 42 (the call's own error code)
//	trap    change count and sum, then panic: the node undoes both
//	spin    loop forever: the call's deadline stops it
//	step    payload 4 × f32, a gradient: one step of SGD with momentum, in place,
//	        on a weight tensor and its velocity; reply the weights (4 × f32)
//	weights reply the weights, then the velocity (4 × f32 each)
//	badstep take a step, then panic: the node undoes the step
//	grow    keep 16 MiB more of Go memory; reply the MiB kept (u32)
//	hoard   keep one more tensor of 1024 floats; return the errno when the node refuses
package main

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

const width = 4

var (
	count uint64
	sum   guest.Tensor // the zero Tensor until the first add
	order []float32
	kept  [][]byte
	hoard []guest.Tensor
	spins uint64
	w, v  guest.Tensor // weights and velocity, made by the first step
)

func floats(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func reply(b []byte) int32 {
	if err := guest.Reply(b); err != nil {
		return errno(err)
	}
	return 0
}

// errno is the ABI errno of a failed accel call, the method's code.
func errno(err error) int32 {
	var e *guest.Error
	if errors.As(err, &e) {
		return int32(e.Errno)
	}
	return int32(abi.EINTERNAL)
}

// accumulate sets sum to sum + x.
func accumulate(x []float32) error {
	t, err := guest.FromFloat32(x, width)
	if err != nil {
		return err
	}
	if sum == (guest.Tensor{}) {
		sum = t
		return nil
	}
	next, err := guest.Add(sum, t)
	if err != nil {
		return err
	}
	if err := guest.FreeAll(sum, t); err != nil {
		return err
	}
	sum = next
	return nil
}

//go:wasmexport add
func add() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return errno(err)
	}
	if len(in) != 4*width {
		reply([]byte("add takes 4 floats"))
		return int32(abi.EINVAL)
	}
	x := floats(in)
	if err := accumulate(x); err != nil {
		return errno(err)
	}
	count++
	order = append(order, x[0])
	return reply(binary.LittleEndian.AppendUint64(nil, count))
}

//go:wasmexport get
func get() int32 {
	out := binary.LittleEndian.AppendUint64(nil, count)
	s := make([]float32, width)
	if sum != (guest.Tensor{}) {
		if err := sum.ReadFloat32(0, s); err != nil {
			return errno(err)
		}
	}
	for _, v := range s {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return reply(out)
}

//go:wasmexport order
func getOrder() int32 {
	var out []byte
	for _, v := range order {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return reply(out)
}

//go:wasmexport echo
func echo() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return errno(err)
	}
	return reply(in)
}

//go:wasmexport fail
func fail() int32 {
	count++
	reply([]byte("failed on purpose"))
	return 42
}

//go:wasmexport trap
func trap() {
	count += 1000
	accumulate([]float32{1000, 1000, 1000, 1000})
	panic("trap on purpose")
}

//go:wasmexport spin
func spin() {
	count++
	for {
		spins++
	}
}

//go:wasmexport step
func step() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return errno(err)
	}
	if len(in) != 4*width {
		return int32(abi.EINVAL)
	}
	if w == (guest.Tensor{}) {
		if w, err = guest.New(guest.F32, width); err != nil {
			return errno(err)
		}
		if v, err = guest.New(guest.F32, width); err != nil {
			return errno(err)
		}
	}
	g, err := guest.FromFloat32(floats(in), width)
	if err != nil {
		return errno(err)
	}
	defer g.Free()
	if err := guest.SGDMomentum(w, g, v, guest.SGDParams{LearningRate: 0.5, Momentum: 0.9}); err != nil {
		return errno(err)
	}
	return weights(false)
}

//go:wasmexport weights
func getWeights() int32 { return weights(true) }

func weights(velocity bool) int32 {
	ts := []guest.Tensor{w}
	if velocity {
		ts = append(ts, v)
	}
	var out []byte
	for _, t := range ts {
		x := make([]float32, width)
		if t != (guest.Tensor{}) {
			if err := t.ReadFloat32(0, x); err != nil {
				return errno(err)
			}
		}
		for _, f := range x {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
		}
	}
	return reply(out)
}

//go:wasmexport badstep
func badStep() {
	step()
	panic("step undone on purpose")
}

//go:wasmexport grow
func grow() int32 {
	b := make([]byte, 16<<20)
	for i := range b {
		b[i] = byte(i) | 1
	}
	kept = append(kept, b)
	return reply(binary.LittleEndian.AppendUint32(nil, uint32(16*len(kept))))
}

//go:wasmexport hoard
func hoardOne() int32 {
	t, err := guest.New(guest.F32, 1024)
	if err != nil {
		return errno(err)
	}
	hoard = append(hoard, t)
	return 0
}

func main() {}
