//go:build wasip1

// Command wasinn drives the node's wasi_ephemeral_nn module as a guest
// built for WasmEdge or Wasmtime would, through the raw imports. Standard
// input holds an ONNX model's bytes; the test's MLP maps x [batch,4] to
// y [batch,3].
//
// By default it loads the model (from its bytes, or with -name by name),
// sets x[i] = float32(sin(i)), computes and prints
//
//	nn y I 0xBITS       each output element from wasi-nn
//	accel y I 0xBITS    the same from accel's model_run of the model -accel
//	units set_input N   the units of set_input, of accel's tensor_create and
//	units accel_in N    tensor_write, of compute, of model_run, of
//	units compute N     get_output and of tensor_read
//	units model_run N
//	units get_output N
//	units accel_read N
//
// With -errors it calls every function wrongly in every way the test
// knows, printing "case NAME ERRNO" for each (and "needed N" after a short
// output buffer). With -fill it loads and unloads the model until load
// fails, printing "loads N ERRNO".
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"unsafe"

	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

//go:wasmimport wasi_ephemeral_nn load
func load(builders, n, encoding, target, graph uint32) uint32

//go:wasmimport wasi_ephemeral_nn load_by_name
func loadByName(name, nameLen, graph uint32) uint32

//go:wasmimport wasi_ephemeral_nn load_by_name_with_config
func loadByNameWithConfig(name, nameLen, config, configLen, graph uint32) uint32

//go:wasmimport wasi_ephemeral_nn init_execution_context
func initExecutionContext(graph, ctx uint32) uint32

//go:wasmimport wasi_ephemeral_nn set_input
func setInput(ctx, index, tensor uint32) uint32

//go:wasmimport wasi_ephemeral_nn compute
func compute(ctx uint32) uint32

//go:wasmimport wasi_ephemeral_nn get_output
func getOutput(ctx, index, out, outMax, written uint32) uint32

//go:wasmimport wasi_ephemeral_nn compute_single
func computeSingle(ctx uint32) uint32

//go:wasmimport wasi_ephemeral_nn get_output_single
func getOutputSingle(ctx, index, out, outMax, written uint32) uint32

//go:wasmimport wasi_ephemeral_nn fini_single
func finiSingle(ctx uint32) uint32

//go:wasmimport wasi_ephemeral_nn unload
func unload(graph uint32) uint32

//go:wasmimport wasi_ephemeral_nn finalize_execution_context
func finalizeExecutionContext(ctx uint32) uint32

//go:wasmimport accel units
func accelUnits(out uint32) uint32

//go:wasmimport accel tensor_create
func tensorCreate(dtype, shape, rank, out uint32) uint32

//go:wasmimport accel tensor_write
func tensorWrite(h, first, src, count uint32) uint32

//go:wasmimport accel tensor_read
func tensorRead(h, first, dst, count uint32) uint32

//go:wasmimport accel model_run
func modelRun(model, inputs, nInputs, outputs, nOutputs uint32) uint32

//go:wasmimport accel model_open
func modelOpen(name, nameLen, out uint32) uint32

var unitsBuf [2]uint64

// measure returns the units charged while f runs, less what measuring
// itself costs the guest (its own instructions are metered too).
func measure(f func() uint32) uint64 {
	accelUnits(addr(&unitsBuf[0]))
	before := unitsBuf[0]
	if e := f(); e != 0 {
		fail(fmt.Errorf("measured call: errno %d: %s", e, guest.LastError()))
	}
	accelUnits(addr(&unitsBuf[0]))
	return unitsBuf[0] - before
}

func measured(f func() uint32) uint64 {
	return measure(f) - measure(func() uint32 { return 0 })
}

// addr is the guest address of a Go value, which lives until main returns.
func addr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

const beyond = 0xfffffff0 // far past any memory this guest has

var keep [][]byte // buffers whose addresses were handed to the host

func bytesAt(b []byte) uint32 {
	b = append(b, 0) // never empty, so the address is valid
	keep = append(keep, b)
	return addr(&b[0])
}

// builder is one {ptr, len} entry of a builder array.
type builder struct{ ptr, len uint32 }

// tensor is wasi-nn's tensor struct.
type tensor struct{ dims, rank, typ, data, dataLen uint32 }

func newTensor(dims []uint32, typ uint32, data []byte) *tensor {
	t := &tensor{rank: uint32(len(dims)), typ: typ, dataLen: uint32(len(data))}
	if len(dims) > 0 {
		t.dims = addr(&dims[0])
	}
	t.data = bytesAt(data)
	return t
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

func input(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wasinn:", err)
	os.Exit(1)
}

func must(what string, e uint32) {
	if e != 0 {
		fail(fmt.Errorf("%s: errno %d: %s", what, e, guest.LastError()))
	}
}

func main() {
	name := flag.String("name", "", "load the graph by this name instead of from standard input's bytes")
	config := flag.Bool("config", false, "with -name, load with load_by_name_with_config")
	accelName := flag.String("accel", "mlp", "the model accel's model_run runs for comparison; empty: none")
	batch := flag.Int("batch", 2, "the input's first dimension")
	target := flag.Uint("target", abi.NNTargetCPU, "the execution target")
	encoding := flag.Uint("encoding", abi.NNEncodingONNX, "the graph encoding")
	typ := flag.Uint("type", abi.NNTensorF32, "the input's tensor type code")
	single := flag.Bool("single", false, "use compute_single and get_output_single")
	width := flag.Int("width", 3, "the output's second dimension")
	ints := flag.Bool("int", false, "set x[i] = int32(i) as 4-byte integers, for a graph whose output has x's shape")
	errorsMode := flag.Bool("errors", false, "exercise the error paths instead")
	fill := flag.Bool("fill", false, "load and unload until load fails")
	flag.Parse()
	model, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	switch {
	case *errorsMode:
		errorPaths(model)
	case *fill:
		b := []builder{{bytesAt(model), uint32(len(model))}}
		for n := 0; ; n++ {
			var g uint32
			if e := load(addr(&b[0]), 1, abi.NNEncodingONNX, abi.NNTargetCPU, addr(&g)); e != 0 {
				fmt.Println("loads", n, e)
				return
			}
			must("unload", unload(g))
		}
	default:
		good(model, *name, *config, *accelName, *batch, uint32(*target), uint32(*encoding), uint32(*typ), *single, *ints, *width)
	}
}

func good(model []byte, name string, config bool, accelName string, batch int, target, encoding, typ uint32, single, ints bool, width int) {
	var g, ctx uint32
	switch {
	case name != "" && config:
		cfg := []byte(`{"n-gpu-layers":0}`)
		must("load_by_name_with_config", loadByNameWithConfig(bytesAt([]byte(name)), uint32(len(name)), bytesAt(cfg), uint32(len(cfg)), addr(&g)))
	case name != "":
		must("load_by_name", loadByName(bytesAt([]byte(name)), uint32(len(name)), addr(&g)))
	default:
		b := []builder{{bytesAt(model), uint32(len(model))}}
		must("load", load(addr(&b[0]), 1, encoding, target, addr(&g)))
	}
	must("init_execution_context", initExecutionContext(g, addr(&ctx)))
	x := input(batch * 4)
	dims := []uint32{uint32(batch), 4}
	data := f32bytes(x)
	if ints {
		data = make([]byte, 4*len(x))
		for i := range x {
			data[4*i], data[4*i+1] = byte(i), byte(i>>8)
		}
	}
	tp := addr(newTensor(dims, typ, data))
	fmt.Println("units set_input", measured(func() uint32 { return setInput(ctx, 0, tp) }))
	if single {
		fmt.Println("units compute", measured(func() uint32 { return computeSingle(ctx) }))
	} else {
		fmt.Println("units compute", measured(func() uint32 { return compute(ctx) }))
	}
	out := make([]float32, batch*width)
	var written uint32
	op, on, wp := addr(&out[0]), uint32(4*len(out)), addr(&written)
	if single {
		fmt.Println("units get_output", measured(func() uint32 { return getOutputSingle(ctx, 0, op, on, wp) }))
		must("fini_single", finiSingle(ctx))
	} else {
		fmt.Println("units get_output", measured(func() uint32 { return getOutput(ctx, 0, op, on, wp) }))
	}
	if written != uint32(4*len(out)) {
		fail(fmt.Errorf("get_output wrote %d bytes, want %d", written, 4*len(out)))
	}
	for i, v := range out {
		fmt.Printf("nn y %d %#08x\n", i, math.Float32bits(v))
	}
	must("finalize_execution_context", finalizeExecutionContext(ctx))
	must("unload", unload(g))

	if accelName == "" {
		return
	}
	// The same work through accel's raw imports, measured alike.
	var m, xh, yh uint32
	must("model_open", modelOpen(bytesAt([]byte(accelName)), uint32(len(accelName)), addr(&m)))
	dp, xp, xhp, yhp := addr(&dims[0]), bytesAt(data), addr(&xh), addr(&yh)
	fmt.Println("units accel_in", measured(func() uint32 {
		if e := tensorCreate(abi.DTypeF32, dp, 2, xhp); e != 0 {
			return e
		}
		return tensorWrite(xh, 0, xp, uint32(len(x)))
	}))
	fmt.Println("units model_run", measured(func() uint32 { return modelRun(m, xhp, 1, yhp, 1) }))
	y := make([]float32, batch*width)
	yp := addr(&y[0])
	fmt.Println("units accel_read", measured(func() uint32 { return tensorRead(yh, 0, yp, uint32(len(y))) }))
	for i, v := range y {
		fmt.Printf("accel y %d %#08x\n", i, math.Float32bits(v))
	}
}

func errorPaths(model []byte) {
	report := func(name string, e uint32) { fmt.Println("case", name, e) }
	good := []builder{{bytesAt(model), uint32(len(model))}}
	var g, g2, ctx uint32
	loadWith := func(b []builder, n, enc, target uint32) uint32 {
		var h uint32
		p := uint32(beyond)
		if len(b) > 0 {
			p = addr(&b[0])
		}
		return load(p, n, enc, target, addr(&h))
	}

	// load
	report("load_out_out_of_bounds", load(addr(&good[0]), 1, abi.NNEncodingONNX, abi.NNTargetCPU, beyond))
	report("load_array_out_of_bounds", load(beyond, 1, abi.NNEncodingONNX, abi.NNTargetCPU, addr(&g)))
	report("load_builder_lies", loadWith([]builder{{bytesAt(model), 1 << 30}}, 1, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_builder_wraps", loadWith([]builder{{0xffffff00, 0x200}}, 1, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_array_longer_than_memory", loadWith(good, 1<<28, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_no_builders", loadWith(good, 0, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_two_builders", loadWith([]builder{good[0], good[0]}, 2, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_openvino", loadWith(good, 1, abi.NNEncodingOpenVINO, abi.NNTargetCPU))
	report("load_ggml", loadWith(good, 1, abi.NNEncodingGGML, abi.NNTargetCPU))
	report("load_unknown_encoding", loadWith(good, 1, 99, abi.NNTargetCPU))
	report("load_unknown_target", loadWith(good, 1, abi.NNEncodingONNX, 7))
	report("load_tpu", loadWith(good, 1, abi.NNEncodingONNX, abi.NNTargetTPU))
	report("load_gpu", loadWith(good, 1, abi.NNEncodingONNX, abi.NNTargetGPU))
	junk := []byte("GGUF\x03\x00\x00\x00 not an onnx model")
	report("load_not_onnx", loadWith([]builder{{bytesAt(junk), uint32(len(junk))}}, 1, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("load_autodetect_not_onnx", loadWith([]builder{{bytesAt(junk), uint32(len(junk))}}, 1, abi.NNEncodingAutodetect, abi.NNTargetCPU))
	report("load_autodetect", loadWith(good, 1, abi.NNEncodingAutodetect, abi.NNTargetAuto))

	// load_by_name and load_by_name_with_config
	nameAt := func(s string) (uint32, uint32) { return bytesAt([]byte(s)), uint32(len(s)) }
	p, n := nameAt("no-such-graph")
	report("load_by_name_unknown", loadByName(p, n, addr(&g)))
	p, _ = nameAt("mlp")
	report("load_by_name_empty", loadByName(p, 0, addr(&g)))
	report("load_by_name_too_long", loadByName(p, 257, addr(&g)))
	report("load_by_name_name_out_of_bounds", loadByName(beyond, 3, addr(&g)))
	report("load_by_name_out_out_of_bounds", loadByName(p, 3, beyond))
	cfg, cfgLen := nameAt("{}")
	report("load_by_name_with_config_config_out_of_bounds", loadByNameWithConfig(p, 3, beyond, 2, addr(&g)))
	report("load_by_name_with_config_config_too_long", loadByNameWithConfig(p, 3, cfg, 64<<10+1, addr(&g)))
	np, nn := nameAt("nope")
	report("load_by_name_with_config_unknown", loadByNameWithConfig(np, nn, cfg, cfgLen, addr(&g)))
	report("load_by_name_with_config", loadByNameWithConfig(p, 3, cfg, cfgLen, addr(&g2)))
	report("load_by_name", loadByName(p, 3, addr(&g)))

	// init_execution_context
	report("init_unknown_graph", initExecutionContext(12345, addr(&ctx)))
	report("init_out_out_of_bounds", initExecutionContext(g, beyond))
	report("init", initExecutionContext(g, addr(&ctx)))

	// set_input
	x := f32bytes(input(8))
	set := func(c, index uint32, dims []uint32, typ uint32, data []byte) uint32 {
		return setInput(c, index, addr(newTensor(dims, typ, data)))
	}
	report("compute_before_set_input", compute(ctx))
	report("get_output_before_compute", getOutput(ctx, 0, bytesAt(make([]byte, 64)), 64, addr(&n)))
	report("set_input_unknown_context", set(999, 0, []uint32{2, 4}, abi.NNTensorF32, x))
	report("set_input_index_past_inputs", set(ctx, 1, []uint32{2, 4}, abi.NNTensorF32, x))
	report("set_input_tensor_out_of_bounds", setInput(ctx, 0, beyond))
	dimsOOB := newTensor([]uint32{2, 4}, abi.NNTensorF32, x)
	dimsOOB.dims = beyond
	report("set_input_dims_out_of_bounds", setInput(ctx, 0, addr(dimsOOB)))
	dataOOB := newTensor([]uint32{2, 4}, abi.NNTensorF32, x)
	dataOOB.data = beyond
	report("set_input_data_out_of_bounds", setInput(ctx, 0, addr(dataOOB)))
	lying := newTensor([]uint32{2, 4}, abi.NNTensorF32, x)
	lying.dataLen = 1 << 30
	report("set_input_data_len_lies", setInput(ctx, 0, addr(lying)))
	report("set_input_type_f16", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF16, x[:16]))
	report("set_input_type_f64", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF64, append(x, x...)))
	report("set_input_type_i64", set(ctx, 0, []uint32{2, 4}, abi.NNTensorI64, append(x, x...)))
	report("set_input_type_u8", set(ctx, 0, []uint32{2, 4}, abi.NNTensorU8, x[:8]))
	report("set_input_type_unknown", set(ctx, 0, []uint32{2, 4}, 77, x))
	report("set_input_i32_for_float", set(ctx, 0, []uint32{2, 4}, abi.NNTensorI32, x))
	report("set_input_old_i32_for_float", set(ctx, 0, []uint32{2, 4}, abi.NNTensorI32Old, x))
	report("set_input_wrong_shape", set(ctx, 0, []uint32{4, 2}, abi.NNTensorF32, x))
	report("set_input_wrong_rank", set(ctx, 0, []uint32{8}, abi.NNTensorF32, x))
	report("set_input_data_short", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF32, x[:28]))
	report("set_input_data_long", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF32, append(x, 0, 0, 0, 0)))
	report("set_input_zero_dimension", set(ctx, 0, []uint32{0, 4}, abi.NNTensorF32, nil))
	report("set_input_rank_9", set(ctx, 0, []uint32{1, 1, 1, 1, 1, 1, 1, 2, 4}, abi.NNTensorF32, x))
	report("set_input_size_overflow", set(ctx, 0, []uint32{1 << 16, 1 << 16, 4}, abi.NNTensorF32, x))
	report("compute_still_before_set_input", compute(ctx))
	report("set_input", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF32, x))
	report("set_input_again", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF32, x))

	// compute and get_output
	report("compute_unknown_context", compute(4242))
	report("get_output_still_before_compute", getOutput(ctx, 0, bytesAt(make([]byte, 24)), 24, addr(&n)))
	report("compute", compute(ctx))
	out := make([]byte, 24)
	var written uint32
	report("get_output_index_past_outputs", getOutput(ctx, 1, addr(&out[0]), 24, addr(&written)))
	report("get_output_buffer_out_of_bounds", getOutput(ctx, 0, beyond, 24, addr(&written)))
	report("get_output_buffer_longer_than_memory", getOutput(ctx, 0, addr(&out[0]), 1<<31, addr(&written)))
	report("get_output_written_out_of_bounds", getOutput(ctx, 0, addr(&out[0]), 24, beyond))
	written = 0
	report("get_output_buffer_too_small", getOutput(ctx, 0, addr(&out[0]), 23, addr(&written)))
	fmt.Println("needed", written)
	report("get_output_unknown_context", getOutput(77, 0, addr(&out[0]), 24, addr(&written)))
	report("get_output", getOutput(ctx, 0, addr(&out[0]), 24, addr(&written)))
	report("fini_single_unknown_context", finiSingle(31337))

	// finalize_execution_context and unload
	var ctx2 uint32
	report("init_second", initExecutionContext(g, addr(&ctx2)))
	report("finalize", finalizeExecutionContext(ctx2))
	report("finalize_again", finalizeExecutionContext(ctx2))
	report("set_input_after_finalize", set(ctx2, 0, []uint32{2, 4}, abi.NNTensorF32, x))
	report("unload", unload(g))
	report("compute_after_unload", compute(ctx))
	report("get_output_after_unload", getOutput(ctx, 0, addr(&out[0]), 24, addr(&written)))
	report("set_input_after_unload", set(ctx, 0, []uint32{2, 4}, abi.NNTensorF32, x))
	report("init_after_unload", initExecutionContext(g, addr(&ctx2)))
	report("unload_again", unload(g))
	report("unload_unknown", unload(9999))
	report("unload_second", unload(g2))

	// limits: 16 graphs, 64 contexts
	var graphs []uint32
	var e uint32
	for e == 0 {
		var h uint32
		if e = loadByName(p, 3, addr(&h)); e == 0 {
			graphs = append(graphs, h)
		}
	}
	fmt.Println("graphs", len(graphs))
	report("load_past_graph_limit", e)
	report("load_bytes_past_graph_limit", loadWith(good, 1, abi.NNEncodingONNX, abi.NNTargetCPU))
	report("unload_one", unload(graphs[0]))
	report("load_after_unload", loadByName(p, 3, addr(&graphs[0])))
	var contexts int
	for e = 0; e == 0; {
		var c uint32
		if e = initExecutionContext(graphs[1], addr(&c)); e == 0 {
			contexts++
		}
	}
	fmt.Println("contexts", contexts)
	report("init_past_context_limit", e)
	report("unload_with_contexts", unload(graphs[1]))
	report("init_after_unload_frees_contexts", initExecutionContext(graphs[2], addr(&ctx)))
}
