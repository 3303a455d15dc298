package hostfn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// NN is the "wasi_ephemeral_nn" host module: wasi-nn's preview-1 API, as
// the guests built for WasmEdge and Wasmtime import it, served with ONNX
// graphs on the invocation's accel Instance. Like Module it is stateless;
// docs/abi.md's wasi-nn section specifies every import.
type NN struct{}

var _ engine.HostModule = NN{}

func (NN) Name() string { return abi.NNModuleName }

// Instantiate defines every wasi-nn function in r.
func (NN) Instantiate(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abi.NNModuleName)
	for _, f := range nnFunctions {
		params := make([]api.ValueType, len(f.params))
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(nnHostFunc(f), params, []api.ValueType{api.ValueTypeI32}).
			WithParameterNames(f.params...).
			WithResultNames("errno").
			Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %s: %w", abi.NNModuleName, err)
	}
	return nil
}

// NNFunctions lists the names of the wasi-nn imports, in docs/abi.md order.
func NNFunctions() []string {
	names := make([]string, len(nnFunctions))
	for i, f := range nnFunctions {
		names[i] = f.name
	}
	return names
}

// nnFunctions are the imports; every parameter is an i32 and the result a
// wasi-nn errno.
var nnFunctions = []function{
	// (i32 i32 i32 i32 i32) -> i32
	{name: "load", params: []string{"builder_ptr", "builder_len", "encoding", "target", "graph_out_ptr"}, run: nnLoad},
	// (i32 i32 i32) -> i32
	{name: "load_by_name", params: []string{"name_ptr", "name_len", "graph_out_ptr"}, run: nnLoadByName},
	// (i32 i32 i32 i32 i32) -> i32, WasmEdge's
	{name: "load_by_name_with_config", params: []string{"name_ptr", "name_len", "config_ptr", "config_len", "graph_out_ptr"}, run: nnLoadByNameWithConfig},
	// (i32 i32) -> i32
	{name: "init_execution_context", params: []string{"graph", "ctx_out_ptr"}, run: nnInitExecutionContext},
	// (i32 i32 i32) -> i32
	{name: "set_input", params: []string{"ctx", "index", "tensor_ptr"}, run: nnSetInput},
	// (i32) -> i32
	{name: "compute", params: []string{"ctx"}, run: nnCompute},
	// (i32 i32 i32 i32 i32) -> i32
	{name: "get_output", params: []string{"ctx", "index", "out_ptr", "out_max_len", "bytes_written_ptr"}, run: nnGetOutput},
	// WasmEdge's single-step calls: a graph that makes its output in one
	// step serves them with the whole step.
	{name: "compute_single", params: []string{"ctx"}, run: nnCompute},
	{name: "get_output_single", params: []string{"ctx", "index", "out_ptr", "out_max_len", "bytes_written_ptr"}, run: nnGetOutput},
	{name: "fini_single", params: []string{"ctx"}, run: nnFiniSingle},
	// (i32) -> i32, WasmEdge's
	{name: "unload", params: []string{"graph"}, run: nnUnload},
	{name: "finalize_execution_context", params: []string{"ctx"}, run: nnFinalizeExecutionContext},
}

func nnHostFunc(f function) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in := instanceFrom(ctx)
		if in == nil {
			stack[0] = uint64(abi.NNUnsupportedOperation)
			return
		}
		stack[0] = uint64(in.nnDispatch(ctx, f, memoryOf(mod), stack))
	}
}

// nnDispatch runs one wasi-nn call: the gate where its errors become
// wasi-nn errnos, as dispatch is for accel's. A panic is logged and
// returned as runtime_error.
func (in *Instance) nnDispatch(ctx context.Context, f function, mem api.Memory, stack []uint64) (e abi.NNErrno) {
	name := abi.NNModuleName + "." + f.name
	defer func() {
		if r := recover(); r != nil {
			in.log.Error("wasi-nn host function panicked", "function", name, "panic", r)
			in.lastErr = name + ": internal error"
			e = abi.NNRuntimeError
		}
	}()
	in.ctx = ctx
	if in.calls != nil {
		in.calls.add(name)
	}
	if mem == nil {
		in.lastErr = name + ": the guest exports no memory"
		return abi.NNMissingMemory
	}
	c := &in.call
	*c = call{ctx: ctx, in: in, mem: mem, args: stack}
	err := f.run(c)
	*c = call{}
	if err == nil {
		in.lastErr = ""
		return abi.NNSuccess
	}
	e = nnErrno(err)
	in.lastErr = name + ": " + err.Error()
	if e == abi.NNRuntimeError {
		in.log.Warn("wasi-nn call failed", "function", name, "err", err)
	} else {
		in.log.Debug("wasi-nn call refused", "function", name, "errno", uint32(e), "err", err)
	}
	return e
}

// nnError is an error with an explicit wasi-nn errno.
type nnError struct {
	errno abi.NNErrno
	msg   string
}

func (e *nnError) Error() string { return e.msg }

func nnFail(errno abi.NNErrno, format string, args ...any) error {
	return &nnError{errno: errno, msg: fmt.Sprintf(format, args...)}
}

// nnErrno maps an error to wasi-nn's errnos, by way of accel's where it
// has no wasi-nn errno of its own. The codes follow WasmEdge
// (plugins/wasi_nn/wasinnfunc.cpp: bad pointers and handles are
// invalid_argument) and Wasmtime (crates/wasi-nn/src/witx.rs: a short
// output buffer is too_large).
func nnErrno(err error) abi.NNErrno {
	var ne *nnError
	if errors.As(err, &ne) {
		return ne.errno
	}
	switch errno(err) {
	case abi.EUNSUPPORTED:
		return abi.NNUnsupportedOperation
	case abi.ENOMEM, abi.ELIMIT, abi.ETOOSMALL:
		return abi.NNTooLarge
	case abi.EBUDGET, abi.ECANCELED, abi.EDEVICE, abi.EINTERNAL:
		return abi.NNRuntimeError
	case abi.ENOENT:
		return abi.NNNotFound
	}
	return abi.NNInvalidArgument // EBADHANDLE, EFAULT, EINVAL, ESHAPE, EOVERFLOW
}

// Execution targets, as NNBackend and NNTargets name them.
const (
	TargetCPU  = "cpu"
	TargetGPU  = "gpu"
	TargetTPU  = "tpu"
	TargetAuto = "auto" // the invocation's own backend
)

// BackendTarget is the execution target b computes on: its device's kind
// for an accelerator backend, else "cpu".
func BackendTarget(b accel.Backend) string {
	if d, ok := b.(accel.DeviceBackend); ok {
		if dev, ok := d.Device(); ok && dev.Kind != "" {
			return dev.Kind
		}
		return TargetGPU
	}
	return TargetCPU
}

var nnTargets = [...]string{abi.NNTargetCPU: TargetCPU, abi.NNTargetGPU: TargetGPU, abi.NNTargetTPU: TargetTPU, abi.NNTargetAuto: TargetAuto}

var nnEncodings = [...]string{
	abi.NNEncodingOpenVINO: "openvino", abi.NNEncodingONNX: "onnx", abi.NNEncodingTensorflow: "tensorflow",
	abi.NNEncodingPyTorch: "pytorch", abi.NNEncodingTensorflowLite: "tensorflowlite",
	abi.NNEncodingAutodetect: "autodetect", abi.NNEncodingGGML: "ggml",
}

// nnState is the wasi-nn part of an Instance: its graphs and execution
// contexts, and the sessions of targets served by other backends than
// the instance's own.
type nnState struct {
	graphs      map[uint32]*nnGraph
	contexts    map[uint32]*nnContext
	nextGraph   uint64 // handles from 0, as WasmEdge and Wasmtime number them
	nextContext uint64
	loaded      int64 // bytes passed to load
	sessions    map[string]*accel.Session
}

type nnGraph struct {
	model   *models.Model
	session *accel.Session
	release func() // drops an interned model; nil for a named one
}

type nnContext struct {
	graph           *nnGraph
	inputs, outputs []*accel.Tensor // outputs nil until compute
}

// close frees what the guest still holds outside the instance's session.
func (s *nnState) close() {
	for _, g := range s.graphs {
		if g.release != nil {
			g.release()
		}
	}
	for _, sess := range s.sessions {
		sess.Close()
	}
	*s = nnState{}
}

// nnSession returns the session that serves target.
func (in *Instance) nnSession(target string) (*accel.Session, error) {
	own := in.session.Backend()
	switch {
	case target == TargetAuto:
		return in.session, nil
	case in.nnBackend == nil:
		if BackendTarget(own) != target {
			return nil, nnFail(abi.NNUnsupportedOperation, "target %s: the node serves %s on %s only", target, BackendTarget(own), own.Name())
		}
		return in.session, nil
	}
	b, err := in.nnBackend(target)
	if err != nil {
		return nil, nnFail(abi.NNUnsupportedOperation, "target %s: %v", target, err)
	}
	if b.Name() == own.Name() {
		return in.session, nil
	}
	if s := in.nn.sessions[b.Name()]; s != nil {
		return s, nil
	}
	s, err := accel.NewSession(b, in.session.Mode(), in.limits, in.charge)
	if err != nil {
		return nil, nnFail(abi.NNUnsupportedOperation, "target %s: %v", target, err)
	}
	if in.nn.sessions == nil {
		in.nn.sessions = map[string]*accel.Session{}
	}
	in.nn.sessions[b.Name()] = s
	return s, nil
}

// addGraph checks the graph limits, then gives m a handle written at slot.
func (in *Instance) addGraph(m *models.Model, s *accel.Session, release func(), slot []byte) {
	if in.nn.graphs == nil {
		in.nn.graphs = map[uint32]*nnGraph{}
	}
	h := uint32(in.nn.nextGraph)
	in.nn.nextGraph++
	in.nn.graphs[h] = &nnGraph{model: m, session: s, release: release}
	binary.LittleEndian.PutUint32(slot, h)
}

// graphRoom refuses a new graph past the limits.
func (in *Instance) graphRoom() error {
	switch {
	case len(in.nn.graphs) >= abi.NNMaxGraphs:
		return nnFail(abi.NNTooLarge, "%d graphs loaded, the limit", len(in.nn.graphs))
	case in.nn.nextGraph > 1<<32-1:
		return nnFail(abi.NNTooLarge, "graph handle numbers exhausted")
	}
	return nil
}

func nnLoad(c *call) error {
	slot, err := c.view(c.u32(4), 4, "graph handle")
	if err != nil {
		return err
	}
	t := c.u32(3)
	if int(t) >= len(nnTargets) {
		return nnFail(abi.NNInvalidArgument, "unknown execution target %d (want 0 cpu, 1 gpu, 2 tpu or 3 auto)", t)
	}
	n := c.u32(1)
	if n == 0 || n > abi.NNMaxBuilders {
		return nnFail(abi.NNInvalidArgument, "builder array of %d entries (want 1 to %d)", n, abi.NNMaxBuilders)
	}
	arr, err := c.elements(c.u32(0), n, abi.NNBuilderSize, "builder array")
	if err != nil {
		return err
	}
	// Every builder is checked before the encoding, as a lying array is
	// wrong whatever it holds.
	builders := make([][]byte, n)
	for i := range builders {
		ptr, size := binary.LittleEndian.Uint32(arr[8*i:]), binary.LittleEndian.Uint32(arr[8*i+4:])
		if builders[i], err = c.view(ptr, uint64(size), fmt.Sprintf("builder %d", i)); err != nil {
			return err
		}
	}
	switch enc := c.u32(2); enc {
	case abi.NNEncodingONNX, abi.NNEncodingAutodetect:
	default:
		name := fmt.Sprint(enc)
		if int(enc) < len(nnEncodings) {
			name = nnEncodings[enc]
		}
		return nnFail(abi.NNInvalidEncoding, "encoding %s: the node runs ONNX graphs only", name)
	}
	if n != 1 {
		return nnFail(abi.NNInvalidArgument, "an ONNX graph takes one builder, the array holds %d", n)
	}
	data := builders[0]
	switch {
	case len(data) > models.MaxModelBytes:
		return nnFail(abi.NNTooLarge, "a graph of %d bytes, over the %d-byte limit", len(data), models.MaxModelBytes)
	case c.in.nn.loaded+int64(len(data)) > abi.NNMaxLoadBytes:
		return nnFail(abi.NNTooLarge, "%d bytes more would pass the %d bytes a guest may load (%d loaded)", len(data), abi.NNMaxLoadBytes, c.in.nn.loaded)
	}
	if err := c.in.graphRoom(); err != nil {
		return err
	}
	s, err := c.in.nnSession(nnTargets[t])
	if err != nil {
		return err
	}
	// The guest's bytes are copied and decoded: charged as a tensor_write.
	if err := c.in.charge(accel.CallUnits + uint64(len(data))); err != nil {
		return err
	}
	c.in.nn.loaded += int64(len(data))
	m, release, err := c.in.models.Intern(data)
	if err != nil {
		return nnFail(abi.NNInvalidEncoding, "%v", err)
	}
	c.in.addGraph(m, s, release, slot)
	return nil
}

func nnLoadByName(c *call) error { return loadByName(c, 0, 2) }

func nnLoadByNameWithConfig(c *call) error {
	// The config sets up WasmEdge's language-model backends; an ONNX graph
	// has nothing to configure, but the bytes must be the guest's.
	if n := c.u32(3); n > abi.NNMaxConfig {
		return nnFail(abi.NNInvalidArgument, "config of %d bytes, over %d", n, abi.NNMaxConfig)
	}
	if _, err := c.view(c.u32(2), uint64(c.u32(3)), "config"); err != nil {
		return err
	}
	return loadByName(c, 0, 4)
}

// loadByName loads the named graph whose name is at args[nameArg] (length
// args[nameArg+1]) and writes its handle at args[outArg].
func loadByName(c *call, nameArg, outArg int) error {
	slot, err := c.view(c.u32(outArg), 4, "graph handle")
	if err != nil {
		return err
	}
	n := c.u32(nameArg + 1)
	if n == 0 || n > abi.NNMaxName {
		return nnFail(abi.NNInvalidArgument, "graph name of %d bytes (want 1 to %d)", n, abi.NNMaxName)
	}
	name, err := c.view(c.u32(nameArg), uint64(n), "graph name")
	if err != nil {
		return err
	}
	if err := c.in.graphRoom(); err != nil {
		return err
	}
	m, err := c.in.models.Lookup(string(name))
	if err != nil {
		return err
	}
	target := c.in.nnTargets[m.Name]
	if target == "" {
		target = TargetAuto
	}
	s, err := c.in.nnSession(target)
	if err != nil {
		return err
	}
	c.in.addGraph(m, s, nil, slot)
	return nil
}

// graph resolves the graph handle in args[i].
func (c *call) graph(i int) (*nnGraph, error) {
	g := c.in.nn.graphs[c.u32(i)]
	if g == nil {
		return nil, nnFail(abi.NNInvalidArgument, "graph %d is not loaded in this guest (never issued, or unloaded)", c.u32(i))
	}
	return g, nil
}

// nnContext resolves the execution-context handle in args[i].
func (c *call) nnContext(i int) (*nnContext, error) {
	cx := c.in.nn.contexts[c.u32(i)]
	if cx == nil {
		return nil, nnFail(abi.NNInvalidArgument, "execution context %d is not live in this guest (never issued, finalized, or its graph unloaded)", c.u32(i))
	}
	return cx, nil
}

func nnInitExecutionContext(c *call) error {
	g, err := c.graph(0)
	if err != nil {
		return err
	}
	slot, err := c.view(c.u32(1), 4, "context handle")
	if err != nil {
		return err
	}
	switch {
	case len(c.in.nn.contexts) >= abi.NNMaxContexts:
		return nnFail(abi.NNTooLarge, "%d execution contexts live, the limit", len(c.in.nn.contexts))
	case c.in.nn.nextContext > 1<<32-1:
		return nnFail(abi.NNTooLarge, "context handle numbers exhausted")
	}
	if c.in.nn.contexts == nil {
		c.in.nn.contexts = map[uint32]*nnContext{}
	}
	h := uint32(c.in.nn.nextContext)
	c.in.nn.nextContext++
	c.in.nn.contexts[h] = &nnContext{graph: g, inputs: make([]*accel.Tensor, len(g.model.Inputs))}
	binary.LittleEndian.PutUint32(slot, h)
	return nil
}

// nnDType reads a tensor type in either numbering (docs/abi.md): code 3
// is i32 in WasmEdge's and u8 in the current witx's, told apart by the
// bytes an element.
func nnDType(code uint32, elems int, dataLen uint32) (accel.DType, error) {
	switch code {
	case abi.NNTensorF32:
		return accel.F32, nil
	case abi.NNTensorI32:
		return accel.I32, nil
	case abi.NNTensorI32Old:
		if uint64(dataLen) == 4*uint64(elems) {
			return accel.I32, nil
		}
		return 0, nnFail(abi.NNInvalidArgument, "tensor type 3 with %d bytes for %d elements: u8, which no graph input takes (f32 and i32 only)", dataLen, elems)
	case abi.NNTensorF16, abi.NNTensorF64, abi.NNTensorI64:
		names := map[uint32]string{abi.NNTensorF16: "f16", abi.NNTensorF64: "f64 (u8 in WasmEdge's numbering)", abi.NNTensorI64: "i64"}
		return 0, nnFail(abi.NNInvalidArgument, "tensor type %d, %s, which no graph input takes (f32 and i32 only)", code, names[code])
	}
	return 0, nnFail(abi.NNInvalidArgument, "unknown tensor type %d", code)
}

// fitsDecl reports whether shape has the declared rank and fixed
// dimensions; a declared scalar takes a [1] tensor.
func fitsDecl(shape []int, dims []onnx.Dim) bool {
	return dims == nil || models.Fits(shape, dims)
}

func nnSetInput(c *call) error {
	cx, err := c.nnContext(0)
	if err != nil {
		return err
	}
	m := cx.graph.model
	idx := c.u32(1)
	if int64(idx) >= int64(len(cx.inputs)) {
		return nnFail(abi.NNInvalidArgument, "input index %d: graph %s takes %d inputs", idx, m.Name, len(cx.inputs))
	}
	f, err := c.params(c.u32(2), abi.NNTensorSize/4, "tensor")
	if err != nil {
		return err
	}
	dimsPtr, rank, typ, dataPtr, dataLen := f[0], f[1], f[2], f[3], f[4]
	if rank > abi.MaxRank {
		return nnFail(abi.NNInvalidArgument, "tensor of rank %d (want at most %d)", rank, abi.MaxRank)
	}
	shape := []int{1} // rank 0: a scalar is a [1] tensor
	if rank > 0 {
		if shape, err = c.shape(dimsPtr, rank); err != nil {
			return err
		}
	}
	elems, err := accel.NumElements(shape)
	if err != nil {
		return err
	}
	data, err := c.view(dataPtr, uint64(dataLen), "tensor data")
	if err != nil {
		return err
	}
	dt, err := nnDType(typ, elems, dataLen)
	if err != nil {
		return err
	}
	if want := uint64(elems) * uint64(dt.Size()); uint64(dataLen) != want {
		return nnFail(abi.NNInvalidArgument, "%d bytes of data for %s%s, which holds %d", dataLen, dt, accel.ShapeString(shape), want)
	}
	decl := m.Inputs[idx]
	switch {
	case decl.ElemType == onnx.Float && dt != accel.F32, decl.ElemType == onnx.Int32 && dt != accel.I32,
		decl.ElemType != onnx.Float && decl.ElemType != onnx.Int32:
		return nnFail(abi.NNInvalidArgument, "input %d (%s) is declared ONNX type %d; a %s tensor cannot pass it (FLOAT takes f32, INT32 i32)", idx, decl.Name, decl.ElemType, dt)
	case !fitsDecl(shape, decl.Dims):
		return nnFail(abi.NNInvalidArgument, "input %d (%s) is declared %s; the tensor is %s", idx, decl.Name, models.DimsString(decl.Dims), accel.ShapeString(shape))
	}
	s := cx.graph.session
	t, err := s.NewTensor(dt, shape)
	if err != nil {
		return err
	}
	if err := s.Write(t, 0, data); err != nil {
		s.Free(t) // best effort: the call is failing already
		return err
	}
	if old := cx.inputs[idx]; old != nil {
		s.Free(old) // charged as tensor_free; left to Close if the budget is spent
	}
	cx.inputs[idx] = t
	return nil
}

func nnCompute(c *call) error {
	cx, err := c.nnContext(0)
	if err != nil {
		return err
	}
	m := cx.graph.model
	for i, t := range cx.inputs {
		if t == nil {
			return nnFail(abi.NNInvalidArgument, "input %d (%s) of graph %s was never set", i, m.Inputs[i].Name, m.Name)
		}
	}
	outs, err := m.Run(c.ctx, cx.graph.session, cx.inputs)
	if err != nil {
		return err
	}
	cx.freeOutputs()
	cx.outputs = outs
	return nil
}

func (cx *nnContext) freeOutputs() {
	for _, t := range cx.outputs {
		cx.graph.session.Free(t)
	}
	cx.outputs = nil
}

func (cx *nnContext) free() {
	cx.freeOutputs()
	for i, t := range cx.inputs {
		if t != nil {
			cx.graph.session.Free(t)
			cx.inputs[i] = nil
		}
	}
}

func nnGetOutput(c *call) error {
	cx, err := c.nnContext(0)
	if err != nil {
		return err
	}
	written, err := c.view(c.u32(4), 4, "bytes written")
	if err != nil {
		return err
	}
	// The whole buffer must be the guest's, as WasmEdge and Wasmtime check.
	buf, err := c.view(c.u32(2), uint64(c.u32(3)), "output buffer")
	if err != nil {
		return err
	}
	idx := c.u32(1)
	switch {
	case cx.outputs == nil:
		return nnFail(abi.NNInvalidArgument, "no output yet: compute has not run on context %d", c.u32(0))
	case int64(idx) >= int64(len(cx.outputs)):
		return nnFail(abi.NNInvalidArgument, "output index %d: graph %s gives %d outputs", idx, cx.graph.model.Name, len(cx.outputs))
	}
	t := cx.outputs[idx]
	need := t.Bytes()
	if need > int64(len(buf)) {
		binary.LittleEndian.PutUint32(written, uint32(need))
		return nnFail(abi.NNTooLarge, "output %d needs %d bytes, the buffer holds %d", idx, need, len(buf))
	}
	if err := cx.graph.session.Read(t, 0, buf[:need]); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(written, uint32(need))
	return nil
}

func nnFiniSingle(c *call) error {
	_, err := c.nnContext(0)
	return err
}

func nnUnload(c *call) error {
	g, err := c.graph(0)
	if err != nil {
		return err
	}
	for h, cx := range c.in.nn.contexts {
		if cx.graph == g {
			cx.free()
			delete(c.in.nn.contexts, h)
		}
	}
	delete(c.in.nn.graphs, c.u32(0))
	if g.release != nil {
		g.release()
	}
	return nil
}

func nnFinalizeExecutionContext(c *call) error {
	cx, err := c.nnContext(0)
	if err != nil {
		return err
	}
	cx.free()
	delete(c.in.nn.contexts, c.u32(0))
	return nil
}
