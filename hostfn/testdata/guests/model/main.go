//go:build wasip1

// Command model runs a model the node holds, through the guest binding, and
// prints what it did in a form the test parses:
//
//	info_raw {...}                  model_info's JSON, as the node wrote it
//	input 0 x f32 [-1 4] [batch 4]  each input and output, from Info
//	output 0 y f32 [-1 3] [batch 3]
//	x 0 0x3f000000                  each input element, as hex bits
//	shape y 2 3                     each output's shape
//	y 0 0x3e8a3d71                  each output element, as hex bits
//
// The input is x[i] = float32(sin(i)) with shape [batch, features]. With
// -errors it instead calls model_open, model_info and model_run wrongly in
// every way the test knows, printing "case NAME ERRNO" and
// "last_error NAME TEXT" for each, and then runs the model once correctly.
// It frees every tensor it creates, so that the node can check that failed
// calls leave none behind.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

// The raw imports, for the calls the binding cannot make wrongly.

//go:wasmimport accel model_open
func modelOpen(name, nameLen, out uint32) uint32

//go:wasmimport accel model_info
func modelInfo(model, buf, bufLen, outLen uint32) uint32

//go:wasmimport accel model_run
func modelRun(model, inputs, nInputs, outputs, nOutputs uint32) uint32

// addr is the guest address of a Go value, which lives until main returns.
func addr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

const beyond = 0xfffffff0 // far past any memory this guest has

func main() {
	name := flag.String("model", "mlp", "the model's name or sha256")
	batch := flag.Int("batch", 2, "the input's first dimension")
	features := flag.Int("features", 4, "the input's second dimension")
	reps := flag.Int("reps", 1, "runs of the model; the last one is printed")
	shape := flag.String("shape", "", "the input's whole shape, comma-separated, instead of [batch, features]")
	timed := flag.Bool("time", false, "time -reps runs, each from input data to output data, and print mean_ns; needs the host's clock")
	errorsMode := flag.Bool("errors", false, "exercise the error paths instead")
	unsupported := flag.String("unsupported", "", "with -errors, also run this model, which ref cannot run")
	flag.Parse()
	var err error
	if *errorsMode {
		err = errorPaths(*name, *unsupported, *batch)
	} else {
		dims := []int{*batch, *features}
		if *shape != "" {
			dims = nil
			for _, f := range strings.Split(*shape, ",") {
				d, perr := strconv.Atoi(f)
				if perr != nil {
					fmt.Fprintln(os.Stderr, "model: -shape:", perr)
					os.Exit(2)
				}
				dims = append(dims, d)
			}
		}
		if *timed {
			err = timeRuns(*name, dims, *reps)
		} else {
			err = run(*name, dims, *reps)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "model:", err)
		os.Exit(1)
	}
}

func input(dims []int) []float32 {
	n := 1
	for _, d := range dims {
		n *= d
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

// rawOpen opens name through the raw import and returns the handle.
func rawOpen(name string) (uint32, uint32) {
	b := []byte(name + "\x00") // never empty, so the pointer is valid
	var h uint32
	e := modelOpen(addr(&b[0]), uint32(len(name)), addr(&h))
	return h, e
}

// rawInfo returns model_info's JSON as the node wrote it.
func rawInfo(h uint32) (string, error) {
	var n uint32
	buf := make([]byte, 1)
	if e := modelInfo(h, addr(&buf[0]), 0, addr(&n)); e != uint32(abi.ETOOSMALL) {
		return "", fmt.Errorf("model_info with an empty buffer: errno %d, want ETOOSMALL", e)
	}
	buf = make([]byte, n)
	var got uint32
	if e := modelInfo(h, addr(&buf[0]), n, addr(&got)); e != 0 {
		return "", fmt.Errorf("model_info: errno %d: %s", e, guest.LastError())
	}
	if got != n {
		return "", fmt.Errorf("model_info needed %d bytes, then wrote %d", n, got)
	}
	return string(buf), nil
}

// timeRuns runs the model reps times, each time from input data in guest
// memory to output data back in it, as a client of the node would, and
// prints the mean time of one run.
func timeRuns(name string, dims []int, reps int) error {
	m, err := guest.OpenModel(name)
	if err != nil {
		return err
	}
	info, err := m.Info()
	if err != nil {
		return err
	}
	data := input(dims)
	once := func() error {
		x, err := guest.FromFloat32(data, dims...)
		if err != nil {
			return err
		}
		outs, err := m.Run(len(info.Outputs), x)
		x.Free()
		if err != nil {
			return err
		}
		for _, o := range outs {
			if _, err := o.Float32(); err != nil {
				return err
			}
		}
		return guest.FreeAll(outs...)
	}
	if err := once(); err != nil { // warm
		return err
	}
	start := time.Now()
	for range reps {
		if err := once(); err != nil {
			return err
		}
	}
	fmt.Println("mean_ns", time.Since(start).Nanoseconds()/int64(max(reps, 1)))
	return nil
}

func run(name string, dims []int, reps int) error {
	m, err := guest.OpenModel(name)
	if err != nil {
		return err
	}
	h, e := rawOpen(name)
	if e != 0 {
		return fmt.Errorf("raw model_open: errno %d", e)
	}
	raw, err := rawInfo(h)
	if err != nil {
		return err
	}
	fmt.Println("info_raw", raw)
	info, err := m.Info()
	if err != nil {
		return err
	}
	for i, v := range info.Inputs {
		fmt.Println("input", i, v.Name, v.DType, v.Shape, v.Dims)
	}
	for i, v := range info.Outputs {
		fmt.Println("output", i, v.Name, v.DType, v.Shape, v.Dims)
	}

	data := input(dims)
	for i, v := range data {
		fmt.Printf("x %d %#08x\n", i, math.Float32bits(v))
	}
	x, err := guest.FromFloat32(data, dims...)
	if err != nil {
		return err
	}
	defer x.Free()
	var outs []guest.Tensor
	for range reps {
		if err := guest.FreeAll(outs...); err != nil {
			return err
		}
		if outs, err = m.Run(len(info.Outputs), x); err != nil {
			return err
		}
	}
	defer guest.FreeAll(outs...)
	for i, o := range outs {
		name := info.Outputs[i].Name
		_, shape, err := o.Shape()
		if err != nil {
			return err
		}
		fmt.Println("shape", name, strings.Trim(fmt.Sprint(shape), "[]"))
		y, err := o.Float32()
		if err != nil {
			return err
		}
		for j, v := range y {
			fmt.Printf("%s %d %#08x\n", name, j, math.Float32bits(v))
		}
	}
	return guest.FreeAll(outs...)
}

// report prints a case's errno and, after a failure, the node's sentence.
func report(name string, err error) {
	var ge *guest.Error
	switch {
	case err == nil:
		fmt.Println("case", name, 0)
	case errors.As(err, &ge):
		fmt.Println("case", name, uint32(ge.Errno))
		fmt.Println("last_error", name, ge.Detail)
	default:
		fmt.Println("case", name, "not-an-errno", err)
	}
}

// reportRaw is report for a raw import's errno.
func reportRaw(name string, e uint32) {
	fmt.Println("case", name, e)
	if e != 0 {
		fmt.Println("last_error", name, guest.LastError())
	}
}

func errorPaths(name, unsupported string, batch int) error {
	m, err := guest.OpenModel(name)
	if err != nil {
		return err
	}
	info, err := m.Info()
	if err != nil {
		return err
	}

	// model_open
	_, err = guest.OpenModel("no-such-model")
	report("unknown_model", err)
	_, err = guest.OpenModel("sha256:" + strings.Repeat("0", 64))
	report("unknown_hash", err)
	_, err = guest.OpenModel("")
	report("empty_name", err)
	_, err = guest.OpenModel(strings.Repeat("m", 257))
	report("long_name", err)
	_, err = guest.OpenModel(info.SHA256)
	report("open_by_hash", err)
	_, err = guest.OpenModel("sha256:" + strings.ToUpper(info.SHA256))
	report("open_by_prefixed_upper_hash", err)
	// Opening the model again, by name or hash, gives the same handle.
	again, err1 := guest.OpenModel(name)
	byHash, err2 := guest.OpenModel(info.SHA256)
	if err1 == nil && err2 == nil && (again.Handle() != byHash.Handle() || again.Handle() == 0) {
		reportRaw("reopen_same_handle", 3)
	} else {
		report("reopen_same_handle", errors.Join(err1, err2))
	}
	nameBytes := []byte(name)
	reportRaw("open_name_out_of_bounds", modelOpen(beyond, uint32(len(name)), addr(&nameBytes[0])))
	reportRaw("open_out_out_of_bounds", modelOpen(addr(&nameBytes[0]), uint32(len(name)), beyond))

	// model_info
	h, e := rawOpen(name)
	if e != 0 {
		return fmt.Errorf("raw model_open: errno %d", e)
	}
	buf := make([]byte, 8)
	var n uint32 = 777
	reportRaw("info_buffer_too_small", modelInfo(h, addr(&buf[0]), uint32(len(buf)), addr(&n)))
	fmt.Println("info_needed", n)
	reportRaw("info_buffer_out_of_bounds", modelInfo(h, beyond, 1<<16, addr(&n)))
	reportRaw("info_bad_model_handle", modelInfo(12345, addr(&buf[0]), uint32(len(buf)), addr(&n)))
	reportRaw("info_model_handle_zero", modelInfo(0, addr(&buf[0]), uint32(len(buf)), addr(&n)))

	// model_run
	x, err := guest.FromFloat32(input([]int{batch, 4}), batch, 4)
	if err != nil {
		return err
	}
	defer x.Free()
	nOut := len(info.Outputs)
	try := func(name string, n int, inputs ...guest.Tensor) {
		outs, err := m.Run(n, inputs...)
		if err == nil {
			guest.FreeAll(outs...)
		}
		report(name, err)
	}
	wide, err := guest.FromFloat32(input([]int{batch, 5}), batch, 5)
	if err != nil {
		return err
	}
	try("wrong_shape", nOut, wide)
	wide.Free()
	flat, err := guest.FromFloat32(input([]int{batch, 4}), batch*4)
	if err != nil {
		return err
	}
	try("wrong_rank", nOut, flat)
	flat.Free()
	ints, err := guest.FromInt32(make([]int32, batch*4), batch, 4)
	if err != nil {
		return err
	}
	try("wrong_dtype", nOut, ints)
	ints.Free()
	try("no_inputs", nOut)
	try("two_inputs", nOut, x, x)
	try("wrong_output_count", nOut+1, x)
	try("no_outputs", 0, x)
	freed, err := guest.FromFloat32(input([]int{batch, 4}), batch, 4)
	if err != nil {
		return err
	}
	freed.Free()
	try("freed_input", nOut, freed)
	try("zero_input_handle", nOut, guest.Tensor{})

	in := []uint32{x.Handle()}
	out := make([]uint32, nOut+1)
	reportRaw("run_bad_model_handle", modelRun(12345, addr(&in[0]), 1, addr(&out[0]), uint32(nOut)))
	reportRaw("run_inputs_out_of_bounds", modelRun(h, beyond, 1, addr(&out[0]), uint32(nOut)))
	reportRaw("run_outputs_out_of_bounds", modelRun(h, addr(&in[0]), 1, beyond, uint32(nOut)))

	if unsupported != "" {
		u, err := guest.OpenModel(unsupported)
		if err != nil {
			return err
		}
		outs, err := u.Run(1, x)
		if err == nil {
			guest.FreeAll(outs...)
		}
		report("unsupported_model", err)
	}

	// After all that, the model still runs.
	try("run_after_errors", nOut, x)
	return nil
}
