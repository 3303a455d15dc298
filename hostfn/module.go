package hostfn

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

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

var functions = []function{
	{name: "tensor_create", params: []string{"dtype", "shape_ptr", "rank", "out_handle_ptr"}, run: tensorCreate},
	{name: "tensor_info", params: []string{"handle", "info_ptr"}, run: tensorInfo},
	{name: "tensor_write", params: []string{"handle", "first", "src_ptr", "count"}, run: tensorWrite},
	{name: "tensor_read", params: []string{"handle", "first", "dst_ptr", "count"}, run: tensorRead},
	{name: "tensor_reshape", params: []string{"handle", "shape_ptr", "rank"}, run: tensorReshape},
	{name: "tensor_free", params: []string{"handle"}, run: tensorFree},
	{name: "matmul", params: []string{"a", "b", "flags", "out_handle_ptr"}, run: matmul},
	{name: "conv2d", params: []string{"x", "w", "bias", "params_ptr", "out_handle_ptr"}, run: conv2d},
	{name: "add_bias", params: []string{"x", "bias", "axis", "out_handle_ptr"}, run: addBias},
	{name: "relu", params: []string{"x", "out_handle_ptr"}, run: relu},
	{name: "maxpool2d", params: []string{"x", "params_ptr", "out_handle_ptr"}, run: maxpool2d},
	{name: "softmax", params: []string{"x", "out_handle_ptr"}, run: softmax},
	{name: "tsne_step", params: []string{"row_ptr", "cols", "vals", "y", "update", "gains", "params_ptr", "kl_ptr"}, run: tsneStep},
	{name: "info", params: []string{"buf_ptr", "buf_len", "out_len_ptr"}, run: info},
	{name: "units", params: []string{"out_ptr"}, run: units},
	{name: "last_error", params: []string{"buf_ptr", "buf_len", "out_len_ptr"}, run: lastError, quiet: true},
	{name: "model_open", params: []string{"name_ptr", "name_len", "out_model_ptr"}, run: modelOpen},
	{name: "model_info", params: []string{"model", "buf_ptr", "buf_len", "out_len_ptr"}, run: modelInfo},
	{name: "model_run", params: []string{"model", "inputs_ptr", "n_inputs", "outputs_ptr", "n_outputs"}, run: modelRun},
}

// hostFunc adapts f to wazero's fast host-function calling convention.
func hostFunc(f function) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in := instanceFrom(ctx)
		if in == nil {
			stack[0] = uint64(abi.EUNSUPPORTED)
			return
		}
		stack[0] = uint64(in.dispatch(ctx, f, mod.Memory(), stack))
	}
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

func matmul(c *call) error {
	a, err := c.tensor(0, "a")
	if err != nil {
		return err
	}
	b, err := c.tensor(1, "b")
	if err != nil {
		return err
	}
	flags := c.u32(2)
	if flags&^(abi.MatMulTransA|abi.MatMulTransB) != 0 {
		return fail(abi.EINVAL, "unknown matmul flags %#x", flags)
	}
	p := accel.MatMulParams{TransA: flags&abi.MatMulTransA != 0, TransB: flags&abi.MatMulTransB != 0}
	return c.op(c.u32(3), func() (*accel.Tensor, error) {
		return c.in.session.MatMul(c.ctx, a, b, p)
	})
}

// oneIfZero reads an ABI count where 0 means the default of 1.
func oneIfZero(v uint32) int {
	if v == 0 {
		return 1
	}
	return int(v)
}

func conv2d(c *call) error {
	x, err := c.tensor(0, "x")
	if err != nil {
		return err
	}
	w, err := c.tensor(1, "w")
	if err != nil {
		return err
	}
	var bias *accel.Tensor
	if c.u32(2) != 0 {
		if bias, err = c.tensor(2, "bias"); err != nil {
			return err
		}
	}
	f, err := c.params(c.u32(3), abi.Conv2DParamsSize/4, "conv2d params")
	if err != nil {
		return err
	}
	p := accel.Conv2DParams{
		StrideH: oneIfZero(f[0]), StrideW: oneIfZero(f[1]),
		PadTop: int(f[2]), PadLeft: int(f[3]), PadBottom: int(f[4]), PadRight: int(f[5]),
		DilationH: oneIfZero(f[6]), DilationW: oneIfZero(f[7]),
		Groups: oneIfZero(f[8]),
	}
	return c.op(c.u32(4), func() (*accel.Tensor, error) {
		return c.in.session.Conv2D(c.ctx, x, w, bias, p)
	})
}

func addBias(c *call) error {
	x, err := c.tensor(0, "x")
	if err != nil {
		return err
	}
	bias, err := c.tensor(1, "bias")
	if err != nil {
		return err
	}
	return c.op(c.u32(3), func() (*accel.Tensor, error) {
		return c.in.session.AddBias(c.ctx, x, bias, int(c.u32(2)))
	})
}

func relu(c *call) error {
	x, err := c.tensor(0, "x")
	if err != nil {
		return err
	}
	return c.op(c.u32(1), func() (*accel.Tensor, error) {
		return c.in.session.Relu(c.ctx, x)
	})
}

func maxpool2d(c *call) error {
	x, err := c.tensor(0, "x")
	if err != nil {
		return err
	}
	f, err := c.params(c.u32(1), abi.Pool2DParamsSize/4, "maxpool2d params")
	if err != nil {
		return err
	}
	p := accel.Pool2DParams{
		KernelH: int(f[0]), KernelW: int(f[1]),
		StrideH: oneIfZero(f[2]), StrideW: oneIfZero(f[3]),
		PadTop: int(f[4]), PadLeft: int(f[5]), PadBottom: int(f[6]), PadRight: int(f[7]),
	}
	return c.op(c.u32(2), func() (*accel.Tensor, error) {
		return c.in.session.MaxPool2D(c.ctx, x, p)
	})
}

func softmax(c *call) error {
	x, err := c.tensor(0, "x")
	if err != nil {
		return err
	}
	return c.op(c.u32(1), func() (*accel.Tensor, error) {
		return c.in.session.Softmax(c.ctx, x)
	})
}

func tsneStep(c *call) error {
	var st accel.TSNEState
	for i, slot := range []struct {
		t    **accel.Tensor
		name string
	}{{&st.RowPtr, "row_ptr"}, {&st.Cols, "cols"}, {&st.Vals, "vals"}, {&st.Y, "y"}, {&st.Update, "update"}, {&st.Gains, "gains"}} {
		t, err := c.tensor(i, slot.name)
		if err != nil {
			return err
		}
		*slot.t = t
	}
	f, err := c.params(c.u32(6), abi.TSNEParamsSize/4, "tsne_step params")
	if err != nil {
		return err
	}
	if f[4]&^abi.TSNEComputeKL != 0 {
		return fail(abi.EINVAL, "unknown tsne_step flags %#x", f[4])
	}
	p := accel.TSNEParams{
		LearningRate: math.Float32frombits(f[0]),
		Momentum:     math.Float32frombits(f[1]),
		Exaggeration: math.Float32frombits(f[2]),
		MinGain:      math.Float32frombits(f[3]),
		ComputeKL:    f[4]&abi.TSNEComputeKL != 0,
	}
	var klSlot []byte
	if p.ComputeKL {
		if klSlot, err = c.view(c.u32(7), 4, "kl"); err != nil {
			return err
		}
	}
	kl, err := c.in.session.TSNEStep(c.ctx, st, p)
	if err != nil {
		return err
	}
	if klSlot != nil {
		binary.LittleEndian.PutUint32(klSlot, math.Float32bits(kl))
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
