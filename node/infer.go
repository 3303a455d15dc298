package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// Tensor is a tensor in host memory: Data holds its elements row-major and
// little-endian, DType.Size() bytes each.
type Tensor struct {
	Name  string
	DType accel.DType
	Shape []int
	Data  []byte
}

// Inference is one run of a registered model from the host: what a
// service answering an inference request asks of the node.
type Inference struct {
	// Model names a registered model, or gives its sha256.
	Model string
	// Inputs are the model's inputs, each once, by name, in any order. An
	// input the model declares rank 0 takes a tensor of shape [] or [1].
	Inputs []Tensor
	// Outputs names the outputs to return, in this order; nil returns
	// every output in the model's order.
	Outputs []string

	// Backend and Mode, where set, run the model on another backend or
	// mode of the node's registry than the node's own.
	Backend string
	Mode    *accel.Mode
	// Limits, where its fields are not zero, replace the node's. The
	// tensor-memory and live-tensor limits bound the run's tensors, inputs
	// and outputs included; Timeout is its deadline (the context's, if
	// earlier, applies too); Budget bounds its units. Memory does not
	// apply: no guest runs.
	Limits Limits
}

// InferResult is what an inference gave.
type InferResult struct {
	// Model is the model's registered name, ModelSHA256 the hex sha256 of
	// its bytes.
	Model, ModelSHA256 string
	// Outputs are f32 tensors, in the order asked for. A scalar output is
	// a [1] tensor.
	Outputs []Tensor

	// Units are the compute units charged: what a guest pays for the same
	// calls (creating and writing each input, model_run, reading each
	// output).
	Units   uint64
	Elapsed time.Duration
	Backend string // the backend that ran the model
	Device  string
	Mode    accel.Mode
}

// Infer runs a registered model on host tensors, by the path a guest's
// model_run takes: the inputs become tensors of a session on the backend,
// checked, charged and bounded there, and models.Model.Run runs the model
// on it, natively where the backend runs ONNX and op by op otherwise. The
// session is closed when Infer returns, so nothing outlives the call.
//
// The error wraps models.ErrNotFound for an unknown model;
// accel.ErrInvalid or accel.ErrShape for inputs or outputs that do not fit
// the model; accel.ErrUnsupported for a model the backend cannot run;
// accel.ErrOutOfMemory or accel.ErrTooMany at the limits;
// engine.ErrBudgetExhausted when the budget cannot cover the run;
// context.DeadlineExceeded or context.Canceled when the run was stopped;
// accel.ErrDevice for a device failure.
func (n *Node) Infer(ctx context.Context, inf Inference) (InferResult, error) {
	res := InferResult{Mode: n.cfg.Mode}
	backend, mode, err := n.target(inf.Backend, inf.Mode)
	if err != nil {
		return res, err
	}
	st := backend.Status()
	res.Backend, res.Device, res.Mode = st.Name, st.Device, mode
	if err := inf.Limits.Check(); err != nil {
		return res, err
	}
	lim := n.limits(inf.Limits)
	m, err := n.models.Lookup(inf.Model)
	if err != nil {
		return res, err
	}
	res.Model, res.ModelSHA256 = m.Name, m.SHA256
	ordered, err := orderInputs(m, inf.Inputs)
	if err != nil {
		return res, fmt.Errorf("model %s: %w", m.Name, err)
	}
	picked, err := pickOutputs(m, inf.Outputs)
	if err != nil {
		return res, fmt.Errorf("model %s: %w", m.Name, err)
	}

	if lim.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Timeout)
		defer cancel()
	}
	start := time.Now()
	meter := &budget{limit: lim.Budget}
	s, err := accel.NewSession(backend, mode, accel.Limits{MaxBytes: lim.TensorMemory, MaxTensors: lim.MaxTensors}, meter.charge)
	if err != nil {
		return res, err
	}
	defer s.Close()
	s.Track(n.occupancy(backend.Name()))
	outs, err := runModel(ctx, s, m, ordered, picked)
	res.Units, res.Elapsed = meter.used, time.Since(start)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return res, err
	}
	res.Outputs = outs
	return res, nil
}

// runModel places the inputs in s, runs m and reads back the outputs picked
// (indices into m.Outputs).
func runModel(ctx context.Context, s *accel.Session, m *models.Model, inputs []Tensor, picked []int) ([]Tensor, error) {
	ts := make([]*accel.Tensor, len(inputs))
	for i, in := range inputs {
		t, err := s.NewTensor(in.DType, in.Shape)
		if err == nil {
			err = s.Write(t, 0, in.Data)
		}
		if err != nil {
			return nil, fmt.Errorf("model %s: input %q: %w", m.Name, in.Name, err)
		}
		ts[i] = t
	}
	outs, err := m.Run(ctx, s, ts)
	if err != nil {
		return nil, err
	}
	res := make([]Tensor, len(picked))
	for i, k := range picked {
		t := outs[k]
		data := make([]byte, t.Bytes())
		if err := s.Read(t, 0, data); err != nil {
			return nil, fmt.Errorf("model %s: output %q: %w", m.Name, m.Outputs[k].Name, err)
		}
		res[i] = Tensor{Name: m.Outputs[k].Name, DType: t.DType(), Shape: slices.Clone(t.Shape()), Data: data}
	}
	return res, nil
}

// orderInputs matches tensors to the model's inputs by name and checks
// that each holds as many bytes as its shape and dtype need; the rest of
// the checking is the model's.
func orderInputs(m *models.Model, given []Tensor) ([]Tensor, error) {
	byName := make(map[string]int, len(given))
	for i, t := range given {
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("%w: input %q is given twice", accel.ErrInvalid, t.Name)
		}
		byName[t.Name] = i
	}
	out := make([]Tensor, len(m.Inputs))
	for i, vi := range m.Inputs {
		k, ok := byName[vi.Name]
		if !ok {
			return nil, fmt.Errorf("%w: input %q is missing (the model takes %s)", accel.ErrInvalid, vi.Name, valueList(m.Inputs))
		}
		delete(byName, vi.Name)
		t := given[k]
		if len(t.Shape) == 0 && vi.Dims != nil && len(vi.Dims) == 0 {
			t.Shape = []int{1} // a scalar is passed as [1]
		}
		if !t.DType.Valid() {
			return nil, fmt.Errorf("%w: input %q has dtype %d", accel.ErrInvalid, t.Name, uint32(t.DType))
		}
		n, err := accel.NumElements(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", t.Name, err)
		}
		if want := int64(n) * int64(t.DType.Size()); int64(len(t.Data)) != want {
			return nil, fmt.Errorf("%w: input %q is %s%s, which takes %d bytes; %d given", accel.ErrShape, t.Name, t.DType, accel.ShapeString(t.Shape), want, len(t.Data))
		}
		out[i] = t
	}
	for _, t := range given {
		if _, left := byName[t.Name]; left {
			return nil, fmt.Errorf("%w: the model has no input %q (it takes %s)", accel.ErrInvalid, t.Name, valueList(m.Inputs))
		}
	}
	return out, nil
}

// pickOutputs returns the indices in m.Outputs of the outputs named, or of
// all of them for nil.
func pickOutputs(m *models.Model, names []string) ([]int, error) {
	if names == nil {
		out := make([]int, len(m.Outputs))
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	out := make([]int, 0, len(names))
	for _, name := range names {
		k := slices.IndexFunc(m.Outputs, func(v onnx.ValueInfo) bool { return v.Name == name })
		switch {
		case k < 0:
			return nil, fmt.Errorf("%w: the model has no output %q (it gives %s)", accel.ErrInvalid, name, valueList(m.Outputs))
		case slices.Contains(out, k):
			return nil, fmt.Errorf("%w: output %q is asked for twice", accel.ErrInvalid, name)
		}
		out = append(out, k)
	}
	return out, nil
}

func valueList(vs []onnx.ValueInfo) string {
	if len(vs) == 0 {
		return "none"
	}
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += strconv.Quote(v.Name)
	}
	return s
}

// budget meters one inference: it charges units until the limit, when not
// zero, is reached, and refuses every charge after that.
type budget struct {
	limit, used uint64
	exhausted   bool
}

func (b *budget) charge(units uint64) error {
	if b.limit != 0 && (b.exhausted || units > b.limit-b.used) {
		b.exhausted = true
		return fmt.Errorf("%w: %d units asked for with %d of %d used", engine.ErrBudgetExhausted, units, b.used, b.limit)
	}
	b.used += units
	return nil
}

// target is the backend and mode that serve a call naming backend and
// mode, either of which may be empty for the node's own.
func (n *Node) target(backend string, mode *accel.Mode) (accel.Backend, accel.Mode, error) {
	if backend == "" && mode == nil {
		return n.backend, n.cfg.Mode, nil
	}
	name, m := n.cfg.Backend, n.cfg.Mode
	if backend != "" {
		name = backend
	}
	if mode != nil {
		m = *mode
	}
	b, err := n.serving(name, m)
	return b, m, err
}

// ModelInfo describes a registered model's inputs and outputs.
type ModelInfo struct {
	Name   string
	SHA256 string // hex
	// Inputs are the graph's inputs, initializers excluded; Outputs its
	// outputs.
	Inputs, Outputs []ValueInfo
}

// ValueInfo describes one input or output of a model as its graph declares
// it.
type ValueInfo struct {
	Name string
	// ElemType is the ONNX element type (TensorProto.DataType), and Type
	// its ONNX name ("FLOAT", "INT32", ...); 0 and "" where the graph does
	// not say.
	ElemType int
	Type     string
	// DType is the tensor dtype that passes the value, or 0 where none can
	// (only FLOAT and INT32 inputs can be passed; outputs are FLOAT).
	DType accel.DType
	// Shape holds each dimension's size, -1 for a symbolic or unknown one;
	// Dims its name, or its size in decimal when it is fixed. Both are
	// empty for a scalar and nil for a value of unknown rank.
	Shape []int64
	Dims  []string
}

// ModelInfo describes the model registered under name (or with that
// sha256); the error wraps models.ErrNotFound when there is none.
func (n *Node) ModelInfo(name string) (ModelInfo, error) {
	m, err := n.models.Lookup(name)
	if err != nil {
		return ModelInfo{}, err
	}
	return describeModel(m), nil
}

// ModelInfos describes every registered model, by name.
func (n *Node) ModelInfos() []ModelInfo {
	ms := n.models.Models()
	out := make([]ModelInfo, len(ms))
	for i, m := range ms {
		out[i] = describeModel(m)
	}
	return out
}

func describeModel(m *models.Model) ModelInfo {
	return ModelInfo{Name: m.Name, SHA256: m.SHA256, Inputs: describeValues(m.Inputs), Outputs: describeValues(m.Outputs)}
}

// elemTypeNames are ONNX's names for its element types
// (TensorProto.DataType).
var elemTypeNames = []string{"", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
	"STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"}

func describeValues(vs []onnx.ValueInfo) []ValueInfo {
	out := make([]ValueInfo, len(vs))
	for i, v := range vs {
		vi := ValueInfo{Name: v.Name, ElemType: v.ElemType}
		if v.ElemType > 0 && v.ElemType < len(elemTypeNames) {
			vi.Type = elemTypeNames[v.ElemType]
		} else if v.ElemType != 0 {
			vi.Type = "TYPE_" + strconv.Itoa(v.ElemType)
		}
		switch v.ElemType {
		case onnx.Float:
			vi.DType = accel.F32
		case onnx.Int32:
			vi.DType = accel.I32
		}
		if v.Dims != nil {
			vi.Shape, vi.Dims = []int64{}, []string{}
		}
		for _, d := range v.Dims {
			size, name := d.Value, d.Param
			if name != "" || size <= 0 {
				size = -1
			} else {
				name = strconv.FormatInt(size, 10)
			}
			vi.Shape = append(vi.Shape, size)
			vi.Dims = append(vi.Dims, name)
		}
		out[i] = vi
	}
	return out
}

// ModelReady says why the named model cannot run on backend in mode (empty
// and nil for the node's own), or returns nil if it can: the backend is
// available and serves the mode, every input has a type a tensor can pass
// and every output is FLOAT, and the backend runs ONNX natively or the
// node can run every op of the graph on it. Whether given inputs fit is
// for the run to say.
func (n *Node) ModelReady(name, backend string, mode *accel.Mode) error {
	m, err := n.models.Lookup(name)
	if err != nil {
		return err
	}
	b, _, err := n.target(backend, mode)
	if err != nil {
		return err
	}
	if st := b.Status(); !st.Available {
		return fmt.Errorf("%w: %s is unavailable: %s", accel.ErrUnsupported, st.Name, st.Reason)
	}
	return runnable(m, b)
}

// Ready says why the node cannot serve inferences on backend in mode (empty
// and nil for the node's own), or returns nil if it can: the backend is
// available and every registered model can run on it (ModelReady).
func (n *Node) Ready(backend string, mode *accel.Mode) error {
	b, _, err := n.target(backend, mode)
	if err != nil {
		return err
	}
	if st := b.Status(); !st.Available {
		return fmt.Errorf("%w: %s is unavailable: %s", accel.ErrUnsupported, st.Name, st.Reason)
	}
	for _, m := range n.models.Models() {
		if err := runnable(m, b); err != nil {
			return err
		}
	}
	return nil
}

// runnable says why m cannot run on b.
func runnable(m *models.Model, b accel.Backend) error {
	for _, vi := range describeValues(m.Inputs) {
		if vi.DType == 0 {
			return fmt.Errorf("model %s: %w: input %q is declared %s, which no tensor can pass (FLOAT and INT32 inputs can)", m.Name, accel.ErrUnsupported, vi.Name, typeName(vi))
		}
	}
	for _, vi := range describeValues(m.Outputs) {
		if vi.ElemType != 0 && vi.DType != accel.F32 {
			return fmt.Errorf("model %s: %w: output %q is declared %s (outputs are FLOAT only)", m.Name, accel.ErrUnsupported, vi.Name, typeName(vi))
		}
	}
	if _, native := b.(accel.ONNXRunner); native {
		return nil
	}
	if err := opByOp(m); err != nil {
		return fmt.Errorf("model %s: cannot run on %s: %w", m.Name, b.Name(), err)
	}
	return nil
}

func typeName(vi ValueInfo) string {
	if vi.Type == "" {
		return "without a type"
	}
	return vi.Type
}

// programs remembers, by a model's sha256, why the node cannot run it op by
// op (nil when it can): models are content-addressed, so the answer never
// changes, and readiness probes ask often.
var programs sync.Map

func opByOp(m *models.Model) error {
	if v, ok := programs.Load(m.SHA256); ok {
		err, _ := v.(error)
		return err
	}
	om, err := onnx.Unmarshal(m.Bytes)
	if err == nil {
		_, err = models.Compile(om)
	}
	programs.Store(m.SHA256, err)
	return err
}
