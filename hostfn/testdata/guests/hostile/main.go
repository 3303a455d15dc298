// Command hostile calls every accel import with arguments a hostile or
// buggy guest could pass, and prints one line per attempt: its name and
// the errno it got. The test compares the lines with the errnos docs/abi.md
// promises, then checks that the node still serves the next guest.
package main

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"
)

//go:wasmimport accel tensor_create
func tensorCreate(dtype, shape, rank, out uint32) uint32

//go:wasmimport accel tensor_info
func tensorInfo(handle, info uint32) uint32

//go:wasmimport accel tensor_write
func tensorWrite(handle, first, src, count uint32) uint32

//go:wasmimport accel tensor_read
func tensorRead(handle, first, dst, count uint32) uint32

//go:wasmimport accel tensor_reshape
func tensorReshape(handle, shape, rank uint32) uint32

//go:wasmimport accel tensor_free
func tensorFree(handle uint32) uint32

//go:wasmimport accel matmul
func matmul(a, b, flags, out uint32) uint32

//go:wasmimport accel conv2d
func conv2d(x, w, bias, params, out uint32) uint32

//go:wasmimport accel add_bias
func addBias(x, bias, axis, out uint32) uint32

//go:wasmimport accel maxpool2d
func maxpool2d(x, params, out uint32) uint32

//go:wasmimport accel tsne_step
func tsneStep(rowPtr, cols, vals, y, update, gains, params, kl uint32) uint32

//go:wasmimport accel add
func add(a, b, out uint32) uint32

//go:wasmimport accel info
func info(buf, bufLen, outLen uint32) uint32

//go:wasmimport accel units
func units(out uint32) uint32

//go:wasmimport accel last_error
func lastError(buf, bufLen, outLen uint32) uint32

// addr is the guest address of a Go value. Go's heap does not move, and the
// values below live until main returns.
func addr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

const (
	f32, i32 = 1, 2
	beyond   = 0xfffffff0 // far past any memory this guest has
)

func report(name string, errno uint32) { fmt.Printf("%s %d\n", name, errno) }

// create makes a tensor of shape or stops the guest.
func create(dtype uint32, shape ...uint32) uint32 {
	var h uint32
	if e := tensorCreate(dtype, addr(&shape[0]), uint32(len(shape)), addr(&h)); e != 0 {
		panic(fmt.Sprintf("create %v: errno %d", shape, e))
	}
	return h
}

func main() {
	// With an argument, only try to use that handle, which another guest
	// holds: it must name nothing here.
	if len(os.Args) > 1 {
		h, _ := strconv.ParseUint(os.Args[1], 10, 32)
		var info [10]uint32
		report("foreign_info", tensorInfo(uint32(h), addr(&info)))
		report("foreign_free", tensorFree(uint32(h)))
		return
	}
	var out uint32
	shape := [3]uint32{2, 3, 4}
	huge := [3]uint32{1 << 16, 1 << 16, 1 << 16}
	zero := [2]uint32{2, 0}

	report("create_shape_out_of_bounds", tensorCreate(f32, beyond, 2, addr(&out)))
	report("create_shape_wraps_address_space", tensorCreate(f32, 0xfffffffc, 2, addr(&out)))
	report("create_rank_0", tensorCreate(f32, addr(&shape), 0, addr(&out)))
	report("create_rank_9", tensorCreate(f32, addr(&shape), 9, addr(&out)))
	report("create_bad_dtype", tensorCreate(7, addr(&shape), 3, addr(&out)))
	report("create_zero_dimension", tensorCreate(f32, addr(&zero), 2, addr(&out)))
	report("create_size_overflow", tensorCreate(f32, addr(&huge), 3, addr(&out)))
	report("create_out_out_of_bounds", tensorCreate(f32, addr(&shape), 3, beyond))

	a := create(f32, 2, 3)
	b := create(f32, 3, 4)
	data := make([]float32, 6)
	report("write_count_overflows", tensorWrite(a, 0, addr(&data[0]), 0x40000001))
	report("write_past_tensor", tensorWrite(a, 4, addr(&data[0]), 6))
	report("write_first_past_tensor", tensorWrite(a, 0xffffffff, addr(&data[0]), 1))
	report("write_src_out_of_bounds", tensorWrite(a, 0, beyond, 6))
	report("read_dst_out_of_bounds", tensorRead(a, 0, beyond, 6))
	report("info_out_of_bounds", tensorInfo(a, beyond))
	report("reshape_wrong_count", tensorReshape(a, addr(&shape), 3))

	report("handle_zero", tensorFree(0))
	report("handle_never_issued", tensorFree(12345))
	report("handle_of_other_guest", tensorInfo(a+1000, addr(&data[0])))
	report("matmul_shape_mismatch", matmul(a, a, 0, addr(&out)))
	report("matmul_bad_flags", matmul(a, b, 0x80, addr(&out)))
	report("matmul_out_out_of_bounds", matmul(a, b, 0, beyond))
	report("add_bias_axis_out_of_range", addBias(a, b, 7, addr(&out)))
	x := create(f32, 1, 1, 4, 4)
	report("conv2d_params_out_of_bounds", conv2d(x, x, 0, beyond, addr(&out)))
	pool := [8]uint32{2, 2, 1, 1, 2, 0, 0, 0} // padding as large as the kernel
	report("maxpool2d_padding_too_large", maxpool2d(x, addr(&pool), addr(&out)))
	w := create(f32, 1, 1, 2, 2)
	for _, stride := range []uint32{1 << 29, 0xffffffff} {
		conv := [9]uint32{stride, 1}
		report(fmt.Sprintf("conv2d_stride_%#x", stride), conv2d(x, w, 0, addr(&conv), addr(&out)))
		pool := [8]uint32{2, 2, stride, 1}
		report(fmt.Sprintf("maxpool2d_stride_%#x", stride), maxpool2d(x, addr(&pool), addr(&out)))
	}
	report("add_shape_mismatch", add(a, b, addr(&out)))
	report("add_out_out_of_bounds", add(a, a, beyond))
	report("add_sum", add(a, a, addr(&out)))

	// t-SNE with a column index outside [0, N): must be refused before any
	// backend reads with it.
	rowPtr := create(i32, 3)
	cols := create(i32, 2)
	vals := create(f32, 2)
	y, u, g := create(f32, 2, 2), create(f32, 2, 2), create(f32, 2, 2)
	rp := [3]int32{0, 1, 2}
	cs := [2]int32{1, 99}
	tensorWrite(rowPtr, 0, addr(&rp), 3)
	tensorWrite(cols, 0, addr(&cs), 2)
	params := [5]uint32{0x43480000, 0x3f000000, 0x3f800000, 0x3c23d70a, 1} // 200, 0.5, 1, 0.01, KL
	var kl float32
	report("tsne_column_out_of_range", tsneStep(rowPtr, cols, vals, y, u, g, addr(&params), addr(&kl)))
	report("tsne_repeated_tensor", tsneStep(rowPtr, cols, vals, y, y, g, addr(&params), addr(&kl)))
	report("tsne_kl_out_of_bounds", tsneStep(rowPtr, cols, vals, y, u, g, addr(&params), beyond))

	var n uint32
	small := make([]byte, 4)
	report("info_buffer_too_small", info(addr(&small[0]), 4, addr(&n)))
	n = 777
	report("info_buffer_out_of_bounds", info(beyond, 1024, addr(&n)))
	report("info_length_after_fault", n) // a failed call writes nothing: still 777
	report("units_out_of_bounds", units(beyond))

	report("free_twice_first", tensorFree(a))
	report("free_twice_second", tensorFree(a))
	report("use_after_free", tensorRead(a, 0, addr(&data[0]), 6))

	msg := make([]byte, 512)
	if e := lastError(addr(&msg[0]), uint32(len(msg)), addr(&n)); e == 0 {
		fmt.Printf("last_error %q\n", msg[:n])
	}
}
