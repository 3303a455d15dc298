package hostfn

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
)

// Module is the "accel" host module. It is stateless: the per-invocation
// state comes from the Instance bound to the call's context.
type Module struct{}

var _ engine.HostModule = Module{}

func (Module) Name() string { return abi.ModuleName }

// Instantiate defines every accel function in r.
func (Module) Instantiate(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abi.ModuleName)
	for _, f := range functions {
		params := make([]api.ValueType, len(f.params))
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(hostFunc(f), params, []api.ValueType{api.ValueTypeI32}).
			WithParameterNames(f.params...).
			WithResultNames("errno").
			Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %s: %w", abi.ModuleName, err)
	}
	return nil
}

// function is one import of the accel module. Every parameter is an i32
// and the single result is an errno.
type function struct {
	name   string
	params []string
	run    func(c *call) error
	// quiet calls do not replace the last error (last_error itself).
	quiet bool
}

// Functions lists the names of the accel imports, in docs/abi.md order.
func Functions() []string {
	names := make([]string, len(functions))
	for i, f := range functions {
		names[i] = f.name
	}
	return names
}

// functions are the imports in docs/abi.md's order: the tensor calls, one
// import per operation of the op table, then models, the node and actors.
var functions = slices.Concat(
	[]function{
		{name: "tensor_create", params: []string{"dtype", "shape_ptr", "rank", "out_handle_ptr"}, run: tensorCreate},
		{name: "tensor_info", params: []string{"handle", "info_ptr"}, run: tensorInfo},
		{name: "tensor_write", params: []string{"handle", "first", "src_ptr", "count"}, run: tensorWrite},
		{name: "tensor_read", params: []string{"handle", "first", "dst_ptr", "count"}, run: tensorRead},
		{name: "tensor_reshape", params: []string{"handle", "shape_ptr", "rank"}, run: tensorReshape},
		{name: "tensor_free", params: []string{"handle"}, run: tensorFree},
	},
	opFunctions(),
	[]function{
		{name: "info", params: []string{"buf_ptr", "buf_len", "out_len_ptr"}, run: info},
		{name: "units", params: []string{"out_ptr"}, run: units},
		{name: "last_error", params: []string{"buf_ptr", "buf_len", "out_len_ptr"}, run: lastError, quiet: true},
		{name: "model_open", params: []string{"name_ptr", "name_len", "out_model_ptr"}, run: modelOpen},
		{name: "model_info", params: []string{"model", "buf_ptr", "buf_len", "out_len_ptr"}, run: modelInfo},
		{name: "model_run", params: []string{"model", "inputs_ptr", "n_inputs", "outputs_ptr", "n_outputs"}, run: modelRun},
	},
	actorFunctions,
)

// opFunctions makes an import of every operation from its description. Its
// i32 arguments are, in order: a handle per input (0 for an absent optional
// one); the parameter words, or one pointer to them; a pointer per output
// for its new handle; and a pointer for the scalar result, if the op has
// one.
func opFunctions() []function {
	var fs []function
	for _, op := range accel.Ops() {
		var params []string
		for _, in := range op.Inputs {
			params = append(params, in.Name)
		}
		switch {
		case op.ParamsByPointer:
			params = append(params, "params_ptr")
		default:
			params = append(params, op.ParamWords...)
		}
		for _, out := range op.Outputs {
			if len(op.Outputs) == 1 {
				out = "out_handle"
			}
			params = append(params, out+"_ptr")
		}
		if op.Scalar != "" {
			params = append(params, op.Scalar+"_ptr")
		}
		fs = append(fs, function{name: op.Name, params: params, run: func(c *call) error { return opCall(c, op) }})
	}
	return fs
}

// hostFunc adapts f to wazero's fast host-function calling convention.
func hostFunc(f function) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in := instanceFrom(ctx)
		if in == nil {
			stack[0] = uint64(abi.EUNSUPPORTED)
			return
		}
		stack[0] = uint64(in.dispatch(ctx, f, memoryOf(mod), stack))
	}
}

// memoryOf returns the guest's memory, or nil when it has none: wazero
// then hands out a nil pointer in a non-nil interface.
func memoryOf(mod api.Module) api.Memory {
	mem := mod.Memory()
	if mem == nil {
		return nil
	}
	if v := reflect.ValueOf(mem); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return mem
}

// dispatch runs one host call. A panic is a node bug, but it must never take
// the node down: it is logged and the guest gets EINTERNAL.
func (in *Instance) dispatch(ctx context.Context, f function, mem api.Memory, stack []uint64) (e abi.Errno) {
	defer func() {
		if r := recover(); r != nil {
			in.log.Error("accel host function panicked", "function", f.name, "panic", r)
			in.lastErr = fmt.Sprintf("%s: internal error", f.name)
			e = abi.EINTERNAL
		}
	}()
	in.ctx = ctx
	if in.calls != nil {
		in.calls.add(f.name)
	}
	if mem == nil {
		in.lastErr = f.name + ": the guest exports no memory"
		return abi.EFAULT
	}
	// One call at a time per guest, and host functions never re-enter the
	// guest, so the instance's call record is reused without allocating.
	c := &in.call
	*c = call{ctx: ctx, in: in, mem: mem, args: stack}
	err := f.run(c)
	*c = call{}
	if f.quiet {
		return errno(err)
	}
	if err == nil {
		in.lastErr = ""
		return abi.OK
	}
	e = errno(err)
	in.lastErr = f.name + ": " + err.Error()
	if e == abi.EDEVICE {
		in.log.Warn("accel call failed on the backend", "function", f.name, "err", err)
	} else {
		in.log.Debug("accel call refused", "function", f.name, "errno", uint32(e), "err", err)
	}
	return e
}

func tensorCreate(c *call) error {
	dtype, rank := accel.DType(c.u32(0)), c.u32(2)
	shape, err := c.shape(c.u32(1), rank)
	if err != nil {
		return err
	}
	return c.op(c.u32(3), func() (*accel.Tensor, error) {
		return c.in.session.NewTensor(dtype, shape)
	})
}

func tensorInfo(c *call) error {
	t, err := c.tensor(0, "tensor")
	if err != nil {
		return err
	}
	b, err := c.view(c.u32(1), abi.TensorInfoSize, "tensor info")
	if err != nil {
		return err
	}
	clear(b)
	binary.LittleEndian.PutUint32(b, uint32(t.DType()))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(t.Shape())))
	for i, d := range t.Shape() {
		binary.LittleEndian.PutUint32(b[8+4*i:], uint32(d))
	}
	return nil
}

// transfer resolves the handle, element range and guest view of a
// tensor_write or tensor_read.
func transfer(c *call) (*accel.Tensor, int, []byte, error) {
	t, err := c.tensor(0, "tensor")
	if err != nil {
		return nil, 0, nil, err
	}
	// The session checks the element range against the tensor.
	b, err := c.elements(c.u32(2), c.u32(3), t.DType().Size(), "tensor data")
	if err != nil {
		return nil, 0, nil, err
	}
	return t, int(c.u32(1)), b, nil
}

func tensorWrite(c *call) error {
	t, first, src, err := transfer(c)
	if err != nil {
		return err
	}
	c.in.touch(c.u32(0))
	return c.in.session.Write(t, first, src)
}

func tensorRead(c *call) error {
	t, first, dst, err := transfer(c)
	if err != nil {
		return err
	}
	return c.in.session.Read(t, first, dst)
}

func tensorReshape(c *call) error {
	t, err := c.tensor(0, "tensor")
	if err != nil {
		return err
	}
	shape, err := c.shape(c.u32(1), c.u32(2))
	if err != nil {
		return err
	}
	c.in.touch(c.u32(0))
	return c.in.session.Reshape(t, shape)
}

func tensorFree(c *call) error {
	t, err := c.tensor(0, "tensor")
	if err != nil {
		return err
	}
	if err := c.in.session.Free(t); err != nil {
		return err
	}
	delete(c.in.handles, c.u32(0))
	return nil
}

// opCall decodes one call of op, checks every pointer before any work, runs
// the op on the guest's session and hands out the new handles.
func opCall(c *call, op *accel.Op) error {
	arg := 0
	next := func() uint32 { arg++; return c.u32(arg - 1) }
	in := make([]*accel.Tensor, len(op.Inputs))
	for i, spec := range op.Inputs {
		if spec.Optional && c.u32(arg) == 0 {
			arg++
			continue
		}
		t, err := c.tensor(arg, spec.Name)
		if err != nil {
			return err
		}
		in[i] = t
		arg++
	}
	words := make([]uint32, len(op.ParamWords))
	if op.ParamsByPointer {
		var err error
		if words, err = c.params(next(), len(op.ParamWords), "params"); err != nil {
			return err
		}
	} else {
		for i := range words {
			words[i] = next()
		}
	}
	p, err := op.DecodeParams(words)
	if err != nil {
		return err
	}
	slots := make([][]byte, len(op.Outputs))
	for i := range slots {
		if slots[i], err = c.view(next(), 4, "output handle"); err != nil {
			return err
		}
	}
	// Only an op that returns tensors needs handle numbers (tsne_step
	// returns none); a counter of 0 has wrapped.
	if len(slots) > 0 && (uint64(c.in.next)+uint64(len(slots)) > math.MaxUint32+1 || c.in.next == 0) {
		return fail(abi.ELIMIT, "handle numbers exhausted")
	}
	var scalarSlot []byte
	if op.Scalar != "" {
		ptr := next()
		if op.WantsScalar(p) {
			if scalarSlot, err = c.view(ptr, 4, op.Scalar); err != nil {
				return err
			}
		}
	}
	for i, spec := range op.Inputs {
		if spec.InPlace {
			c.in.touch(c.u32(i)) // each input takes one argument
		}
	}
	outs, scalar, err := c.in.session.Run(c.ctx, op, p, in...)
	if err != nil {
		return err
	}
	for i, t := range outs {
		h := c.in.next
		c.in.next++
		c.in.handles[h] = t
		binary.LittleEndian.PutUint32(slots[i], h)
	}
	if scalarSlot != nil {
		binary.LittleEndian.PutUint32(scalarSlot, math.Float32bits(scalar))
	}
	return nil
}

// copyOut writes msg into the guest buffer at args[arg] (length
// args[arg+1]) and its length at args[arg+2], or only the length and
// ETOOSMALL when it does not fit. Nothing is written when a pointer is bad.
func copyOut(c *call, arg int, msg []byte) error {
	lenSlot, err := c.view(c.u32(arg+2), 4, "length")
	if err != nil {
		return err
	}
	if uint32(len(msg)) > c.u32(arg+1) {
		binary.LittleEndian.PutUint32(lenSlot, uint32(len(msg)))
		return fail(abi.ETOOSMALL, "%d bytes needed, buffer holds %d", len(msg), c.u32(arg+1))
	}
	buf, err := c.view(c.u32(arg), uint64(len(msg)), "buffer")
	if err != nil {
		return err
	}
	copy(buf, msg)
	binary.LittleEndian.PutUint32(lenSlot, uint32(len(msg)))
	return nil
}

func info(c *call) error { return copyOut(c, 0, c.in.info) }

func lastError(c *call) error { return copyOut(c, 0, []byte(c.in.lastErr)) }

func units(c *call) error {
	b, err := c.view(c.u32(0), abi.UnitsSize, "units")
	if err != nil {
		return err
	}
	used, budget := engine.Units(c.ctx)
	binary.LittleEndian.PutUint64(b, used)
	binary.LittleEndian.PutUint64(b[8:], budget)
	return nil
}
