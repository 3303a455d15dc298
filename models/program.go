package models

// A Program is checked and ordered once by Compile, and each Run maps its
// nodes one by one onto the operations of an accel.Session, so every backend
// (and every determinism mode) that serves a Session can run it, metered like
// any other call.

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// Program is an ONNX graph checked and ordered for running on accel backends.
// It is immutable, so one Program may run on many sessions at once.
type Program struct {
	inputs  []onnx.ValueInfo
	outputs []onnx.ValueInfo
	inits   []initializer // the float initializers that some node or output reads
	steps   []step        // in topological order
	// lastUse is the index of the last step that reads each tensor value,
	// len(steps) for graph outputs: the run frees a value after that step.
	lastUse map[string]int
}

// initializer is a float initializer encoded once, ready to upload.
type initializer struct {
	name  string
	shape []int
	data  []byte
}

type opKind int

const (
	opGemm opKind = iota
	opMatMul
	opConv
	opRelu
	opSoftmax
	opMaxPool
	opAdd
	opReshape
	opFlatten
	opIdentity
)

// step is one node with its attributes parsed.
type step struct {
	op   string // ONNX op type, for messages
	desc string // `node "name"`, or the node's index when it has no name
	kind opKind
	in   []string // tensor inputs; "" for an omitted optional one
	out  string

	mm     accel.MatMulParams // Gemm
	conv   accel.Conv2DParams // Conv
	kernel []int              // Conv kernel_shape, nil when not given
	pool   accel.Pool2DParams // MaxPool
	axis   int                // Softmax (normalised at run time) and Flatten
	bias   int                // Add: the input that is the bias, -1 for either
	shape  []int64            // Reshape target
}

func (st *step) errorf(format string, args ...any) error {
	return fmt.Errorf("onnx op %q (%s): "+format, append([]any{st.op, st.desc}, args...)...)
}

// Compile checks that every node is an op this package runs, with attributes
// it supports, orders the nodes topologically, and validates initializers. It
// returns an error wrapping accel.ErrUnsupported naming the first unsupported
// op or attribute, and one wrapping accel.ErrInvalid (or accel.ErrShape) for a
// malformed graph: an undefined value, a value defined twice, a cycle,
// initializer data that does not match its dims.
func Compile(m *onnx.Model) (*Program, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil model", accel.ErrInvalid)
	}
	g := &m.Graph
	c := &compiler{
		opset: m.OpsetVersion,
		inits: map[string]*onnx.Tensor{},
		rank:  map[string]int{},
	}
	p := &Program{lastUse: map[string]int{}}

	for i := range g.Initializers {
		t := &g.Initializers[i]
		if err := checkInitializer(t); err != nil {
			return nil, err
		}
		if _, dup := c.inits[t.Name]; dup {
			return nil, fmt.Errorf("%w: initializer %q is defined twice", accel.ErrInvalid, t.Name)
		}
		c.inits[t.Name] = t
		c.rank[t.Name] = len(t.Dims)
	}
	defined := map[string]bool{}
	for name := range c.inits {
		defined[name] = true
	}
	for _, in := range g.Inputs {
		if _, ok := c.inits[in.Name]; ok {
			continue // an initializer listed as an input: a constant here
		}
		if err := checkInput(in); err != nil {
			return nil, err
		}
		if defined[in.Name] {
			return nil, fmt.Errorf("%w: graph input %q is defined twice", accel.ErrInvalid, in.Name)
		}
		defined[in.Name] = true
		c.rank[in.Name] = -1
		if in.Dims != nil {
			c.rank[in.Name] = len(in.Dims)
		}
		p.inputs = append(p.inputs, cloneValueInfo(in))
	}

	order, err := topoSort(g.Nodes, defined)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{} // float initializers read by a node or output
	for _, i := range order {
		st, err := c.compile(&g.Nodes[i], i)
		if err != nil {
			return nil, err
		}
		for _, in := range st.in {
			if in != "" {
				used[in] = true
				p.lastUse[in] = len(p.steps)
			}
		}
		p.lastUse[st.out] = len(p.steps) // dropped at once if nothing reads it
		p.steps = append(p.steps, st)
	}

	for _, out := range g.Outputs {
		if out.Name == "" {
			return nil, fmt.Errorf("%w: graph output without a name", accel.ErrInvalid)
		}
		if _, ok := c.rank[out.Name]; !ok {
			return nil, fmt.Errorf("%w: graph output %q is not defined", accel.ErrInvalid, out.Name)
		}
		if err := c.tensorValue(out.Name); err != nil {
			return nil, fmt.Errorf("graph output: %w", err)
		}
		if out.ElemType != 0 && out.ElemType != onnx.Float {
			return nil, fmt.Errorf("graph output %q of element type %d is %w (only float)", out.Name, out.ElemType, accel.ErrUnsupported)
		}
		used[out.Name] = true
		p.lastUse[out.Name] = len(p.steps)
		p.outputs = append(p.outputs, cloneValueInfo(out))
	}

	// Upload in graph order, so that runs allocate the same way every time.
	for i := range g.Initializers {
		t := &g.Initializers[i]
		if !used[t.Name] || t.DataType != onnx.Float {
			continue
		}
		shape := make([]int, len(t.Dims))
		for j, d := range t.Dims {
			shape[j] = int(d)
		}
		p.inits = append(p.inits, initializer{name: t.Name, shape: shape, data: accel.EncodeFloat32(t.Floats)})
	}
	return p, nil
}

// Inputs describes the graph's non-initializer inputs, in the order Run takes
// them.
func (p *Program) Inputs() []onnx.ValueInfo { return cloneValueInfos(p.inputs) }

// Outputs describes the graph's outputs, in the order Run returns them.
func (p *Program) Outputs() []onnx.ValueInfo { return cloneValueInfos(p.outputs) }

func cloneValueInfos(v []onnx.ValueInfo) []onnx.ValueInfo {
	out := make([]onnx.ValueInfo, len(v))
	for i := range v {
		out[i] = cloneValueInfo(v[i])
	}
	return out
}

func cloneValueInfo(v onnx.ValueInfo) onnx.ValueInfo {
	v.Dims = slices.Clone(v.Dims)
	return v
}

// checkInitializer checks that an initializer's data fills its dims.
func checkInitializer(t *onnx.Tensor) error {
	if t.Name == "" {
		return fmt.Errorf("%w: initializer without a name", accel.ErrInvalid)
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 || d > accel.MaxElements {
			return fmt.Errorf("%w: initializer %q has dims %v", accel.ErrInvalid, t.Name, t.Dims)
		}
		n *= d
		if n > accel.MaxElements {
			return fmt.Errorf("%w: initializer %q dims %v hold more than %d elements", accel.ErrOverflow, t.Name, t.Dims, accel.MaxElements)
		}
	}
	var have int
	switch t.DataType {
	case onnx.Float:
		have = len(t.Floats)
	case onnx.Int64:
		have = len(t.Int64s)
	case onnx.Int32:
		have = len(t.Int32s)
	default:
		return nil // checked only if a node reads it
	}
	if int64(have) != n {
		return fmt.Errorf("%w: initializer %q has %d values for dims %v", accel.ErrInvalid, t.Name, have, t.Dims)
	}
	return nil
}

// checkInput checks that a graph input can be an accel tensor.
func checkInput(in onnx.ValueInfo) error {
	switch {
	case in.Name == "":
		return fmt.Errorf("%w: graph input without a name", accel.ErrInvalid)
	case in.ElemType != onnx.Float:
		return fmt.Errorf("graph input %q of element type %d is %w (only float)", in.Name, in.ElemType, accel.ErrUnsupported)
	case in.Dims != nil && (len(in.Dims) == 0 || len(in.Dims) > accel.MaxRank):
		return fmt.Errorf("graph input %q of rank %d is %w (rank 1 to %d)", in.Name, len(in.Dims), accel.ErrUnsupported, accel.MaxRank)
	}
	return nil
}

// topoSort returns the nodes' indices in an order where every input is
// defined before it is read: the graph's own order when it is already sorted,
// as ONNX requires.
func topoSort(nodes []onnx.Node, defined map[string]bool) ([]int, error) {
	producer := map[string]int{}
	for i := range nodes {
		for _, o := range nodes[i].Outputs {
			if o == "" {
				continue
			}
			if _, dup := producer[o]; dup || defined[o] {
				return nil, fmt.Errorf("%w: value %q is defined twice (again by %s)", accel.ErrInvalid, o, nodeDesc(&nodes[i], i))
			}
			producer[o] = i
		}
	}
	for i := range nodes {
		for _, in := range nodes[i].Inputs {
			if _, ok := producer[in]; in != "" && !ok && !defined[in] {
				return nil, fmt.Errorf("%w: onnx op %q (%s) reads %q, which is not defined", accel.ErrInvalid, nodes[i].OpType, nodeDesc(&nodes[i], i), in)
			}
		}
	}

	ready := maps.Clone(defined)
	avail := func(in string) bool { return in == "" || ready[in] }
	order := make([]int, 0, len(nodes))
	done := make([]bool, len(nodes))
	for len(order) < len(nodes) {
		progress := false
		for i := range nodes {
			if done[i] || slices.IndexFunc(nodes[i].Inputs, func(in string) bool { return !avail(in) }) >= 0 {
				continue
			}
			done[i], progress = true, true
			order = append(order, i)
			for _, o := range nodes[i].Outputs {
				ready[o] = true
			}
		}
		if progress {
			continue
		}
		// Every stuck node waits on a stuck producer; following them from
		// any stuck node must come back round, so name a node on the cycle.
		i := slices.Index(done, false)
		seen := map[int]bool{}
		for !seen[i] {
			seen[i] = true
			for _, in := range nodes[i].Inputs {
				if !avail(in) {
					i = producer[in]
					break
				}
			}
		}
		return nil, fmt.Errorf("%w: graph has a cycle through onnx op %q (%s)", accel.ErrInvalid, nodes[i].OpType, nodeDesc(&nodes[i], i))
	}
	return order, nil
}

func nodeDesc(n *onnx.Node, i int) string {
	if n.Name != "" {
		return fmt.Sprintf("node %q", n.Name)
	}
	return fmt.Sprintf("node %d", i)
}

// compiler checks nodes in topological order, tracking each value's rank
// (-1 when unknown) so that forms this package cannot run fail at Compile
// where the graph says enough, and at Run otherwise.
type compiler struct {
	opset int64
	inits map[string]*onnx.Tensor
	rank  map[string]int
}

// tensorValue checks that a value is one a run holds as an f32 tensor.
func (c *compiler) tensorValue(name string) error {
	if t, ok := c.inits[name]; ok {
		if t.DataType != onnx.Float {
			return fmt.Errorf("initializer %q of element type %d is %w as a tensor (int64 only as a Reshape shape)", name, t.DataType, accel.ErrUnsupported)
		}
		if len(t.Dims) == 0 {
			return fmt.Errorf("scalar initializer %q is %w (rank 1 to %d)", name, accel.ErrUnsupported, accel.MaxRank)
		}
		shape := make([]int, len(t.Dims))
		for i, d := range t.Dims {
			shape[i] = int(d)
		}
		if _, err := accel.NumElements(shape); err != nil {
			return fmt.Errorf("initializer %q: %w", name, err)
		}
	}
	return nil
}

var attrsOf = map[string][]string{
	"Gemm":     {"alpha", "beta", "transA", "transB"},
	"MatMul":   {},
	"Conv":     {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
	"Relu":     {},
	"Softmax":  {"axis"},
	"MaxPool":  {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
	"Add":      {},
	"Reshape":  {"allowzero"},
	"Flatten":  {"axis"},
	"Identity": {},
}

func (c *compiler) compile(n *onnx.Node, i int) (step, error) {
	st := step{op: n.OpType, desc: nodeDesc(n, i)}
	known, ok := attrsOf[n.OpType]
	if !ok || (n.Domain != "" && n.Domain != "ai.onnx") {
		op := n.OpType
		if n.Domain != "" {
			op = n.Domain + "." + op
		}
		return st, fmt.Errorf("onnx op %q (%s) is %w", op, st.desc, accel.ErrUnsupported)
	}
	for _, a := range n.Attrs {
		if !slices.Contains(known, a.Name) {
			return st, st.errorf("attribute %q is %w", a.Name, accel.ErrUnsupported)
		}
	}
	outs := n.Outputs
	for len(outs) > 0 && outs[len(outs)-1] == "" {
		outs = outs[:len(outs)-1] // omitted optional outputs
	}
	if len(outs) != 1 || outs[0] == "" {
		return st, st.errorf("%d outputs are %w (only one)", len(n.Outputs), accel.ErrUnsupported)
	}
	st.out = outs[0]
	a := attrs{st: &st, n: n}

	var err error
	rank := -1 // of the output
	switch n.OpType {
	case "Gemm":
		st.kind = opGemm
		if err = c.inputs(&st, n, 2, 3); err != nil {
			break
		}
		var alpha, beta float32
		var ta, tb bool
		alpha, err = a.float("alpha", 1)
		if err == nil {
			beta, err = a.float("beta", 1)
		}
		if err == nil {
			ta, err = a.bool("transA")
		}
		if err == nil {
			tb, err = a.bool("transB")
		}
		if err != nil {
			break
		}
		st.mm = accel.MatMulParams{TransA: ta, TransB: tb}
		hasC := len(st.in) == 3 && st.in[2] != ""
		switch {
		case alpha != 1:
			err = st.errorf("alpha %v is %w (only 1)", alpha, accel.ErrUnsupported)
		case hasC && beta != 1:
			err = st.errorf("beta %v is %w (only 1)", beta, accel.ErrUnsupported)
		case c.knownRank(st.in[0], 2) || c.knownRank(st.in[1], 2):
			err = st.errorf("%w: gemm needs 2-d inputs A and B", accel.ErrShape)
		case hasC && c.knownRank(st.in[2], 1):
			err = st.errorf("input C of rank %d is %w (only [N])", c.rank[st.in[2]], accel.ErrUnsupported)
		}
		rank = 2
	case "MatMul":
		st.kind = opMatMul
		if err = c.inputs(&st, n, 2, 2); err != nil {
			break
		}
		if c.knownRank(st.in[0], 2) || c.knownRank(st.in[1], 2) {
			err = st.errorf("inputs of rank %d and %d are %w (only 2-d)", c.rank[st.in[0]], c.rank[st.in[1]], accel.ErrUnsupported)
		}
		rank = 2
	case "Conv":
		st.kind = opConv
		if err = c.inputs(&st, n, 2, 3); err != nil {
			break
		}
		err = c.conv(&st, a)
		rank = 4
	case "Relu", "Identity":
		st.kind = opRelu
		if n.OpType == "Identity" {
			st.kind = opIdentity
		}
		if err = c.inputs(&st, n, 1, 1); err == nil {
			rank = c.rank[st.in[0]]
		}
	case "Softmax":
		st.kind = opSoftmax
		if err = c.inputs(&st, n, 1, 1); err != nil {
			break
		}
		// Before opset 13 Softmax flattens to 2-d at axis (default 1);
		// on the last axis that is the same as the newer per-axis form.
		def := int64(-1)
		if c.opset > 0 && c.opset < 13 {
			def = 1
		}
		var axis int64
		if axis, err = a.int("axis", def); err != nil {
			break
		}
		st.axis = int(axis)
		rank = c.rank[st.in[0]]
		if rank >= 0 {
			_, err = softmaxAxis(&st, rank)
		}
	case "MaxPool":
		st.kind = opMaxPool
		if err = c.inputs(&st, n, 1, 1); err != nil {
			break
		}
		err = c.maxPool(&st, a)
		rank = 4
	case "Add":
		st.kind = opAdd
		if err = c.inputs(&st, n, 2, 2); err != nil {
			break
		}
		err = c.add(&st)
		if r0, r1 := c.rank[st.in[0]], c.rank[st.in[1]]; r0 >= 0 && r1 >= 0 {
			rank = max(r0, r1)
		}
	case "Reshape":
		st.kind = opReshape
		err = c.reshape(&st, n, a)
		rank = len(st.shape)
	case "Flatten":
		st.kind = opFlatten
		if err = c.inputs(&st, n, 1, 1); err != nil {
			break
		}
		var axis int64
		if axis, err = a.int("axis", 1); err != nil {
			break
		}
		st.axis = int(axis)
		if r := c.rank[st.in[0]]; r >= 0 && (st.axis < -r || st.axis > r) {
			err = st.errorf("%w: axis %d outside rank %d", accel.ErrInvalid, st.axis, r)
		}
		rank = 2
	}
	if err != nil {
		return st, err
	}
	c.rank[st.out] = rank
	return st, nil
}

// knownRank reports whether name's rank is known and differs from want.
func (c *compiler) knownRank(name string, want int) bool {
	r := c.rank[name]
	return r >= 0 && r != want
}

// inputs checks the node's input count and that each is a tensor value.
func (c *compiler) inputs(st *step, n *onnx.Node, lo, hi int) error {
	ins := n.Inputs
	for len(ins) > lo && ins[len(ins)-1] == "" {
		ins = ins[:len(ins)-1]
	}
	if len(ins) < lo || len(ins) > hi {
		want := fmt.Sprint(lo)
		if hi > lo {
			want = fmt.Sprintf("%d to %d", lo, hi)
		}
		return st.errorf("%w: %d inputs, want %s", accel.ErrInvalid, len(n.Inputs), want)
	}
	for j, in := range ins {
		if in == "" && j < lo {
			return st.errorf("%w: required input %d is omitted", accel.ErrInvalid, j)
		}
		if in == "" {
			continue
		}
		if err := c.tensorValue(in); err != nil {
			return st.errorf("%w", err)
		}
	}
	st.in = slices.Clone(ins)
	return nil
}

func (c *compiler) conv(st *step, a attrs) error {
	if c.knownRank(st.in[0], 4) || c.knownRank(st.in[1], 4) {
		return st.errorf("input X of rank %d with weights of rank %d is %w (only 2-d convolution)", c.rank[st.in[0]], c.rank[st.in[1]], accel.ErrUnsupported)
	}
	if len(st.in) == 3 && st.in[2] != "" && c.knownRank(st.in[2], 1) {
		return st.errorf("%w: bias must be 1-d, got rank %d", accel.ErrShape, c.rank[st.in[2]])
	}
	if err := a.noAutoPad(); err != nil {
		return err
	}
	kernel, err := a.ints("kernel_shape", 2, nil, 1)
	if err != nil {
		return err
	}
	strides, err := a.ints("strides", 2, []int{1, 1}, 1)
	if err != nil {
		return err
	}
	dil, err := a.ints("dilations", 2, []int{1, 1}, 1)
	if err != nil {
		return err
	}
	pads, err := a.ints("pads", 4, []int{0, 0, 0, 0}, 0)
	if err != nil {
		return err
	}
	group, err := a.int("group", 1)
	if err != nil {
		return err
	}
	if group < 1 || group > accel.MaxElements {
		return st.errorf("%w: group %d", accel.ErrInvalid, group)
	}
	if w, ok := c.inits[st.in[1]]; ok && kernel != nil && (w.Dims[2] != int64(kernel[0]) || w.Dims[3] != int64(kernel[1])) {
		return st.errorf("%w: kernel_shape %v does not match weights %v", accel.ErrShape, kernel, w.Dims)
	}
	st.kernel = kernel
	// ONNX orders pads as x1_begin, x2_begin, x1_end, x2_end.
	st.conv = accel.Conv2DParams{
		StrideH: strides[0], StrideW: strides[1],
		PadTop: pads[0], PadLeft: pads[1], PadBottom: pads[2], PadRight: pads[3],
		DilationH: dil[0], DilationW: dil[1],
		Groups: int(group),
	}
	return nil
}

func (c *compiler) maxPool(st *step, a attrs) error {
	if c.knownRank(st.in[0], 4) {
		return st.errorf("input of rank %d is %w (only 2-d pooling)", c.rank[st.in[0]], accel.ErrUnsupported)
	}
	if err := a.noAutoPad(); err != nil {
		return err
	}
	for _, name := range []string{"ceil_mode", "storage_order"} {
		v, err := a.int(name, 0)
		if err != nil {
			return err
		}
		if v != 0 {
			return st.errorf("%s %d is %w (only 0)", name, v, accel.ErrUnsupported)
		}
	}
	dil, err := a.ints("dilations", 2, []int{1, 1}, 1)
	if err != nil {
		return err
	}
	if dil[0] != 1 || dil[1] != 1 {
		return st.errorf("dilations %v are %w (only 1)", dil, accel.ErrUnsupported)
	}
	kernel, err := a.ints("kernel_shape", 2, nil, 1)
	if err != nil {
		return err
	}
	if kernel == nil {
		return st.errorf("%w: kernel_shape is required", accel.ErrInvalid)
	}
	strides, err := a.ints("strides", 2, []int{1, 1}, 1)
	if err != nil {
		return err
	}
	pads, err := a.ints("pads", 4, []int{0, 0, 0, 0}, 0)
	if err != nil {
		return err
	}
	st.pool = accel.Pool2DParams{
		KernelH: kernel[0], KernelW: kernel[1],
		StrideH: strides[0], StrideW: strides[1],
		PadTop: pads[0], PadLeft: pads[1], PadBottom: pads[2], PadRight: pads[3],
	}
	return nil
}

// add decides which operand of an Add is the bias where the graph says:
// when exactly one is an initializer, it is, so it must vary along one axis
// at most and have no more axes than the other operand.
func (c *compiler) add(st *step) error {
	st.bias = -1 // either, decided at run time
	t0, init0 := c.inits[st.in[0]]
	t1, init1 := c.inits[st.in[1]]
	if init0 == init1 {
		return nil
	}
	st.bias = 1
	x, b := st.in[0], t1
	if init0 {
		st.bias, x, b = 0, st.in[1], t0
	}
	varying := 0
	for _, d := range b.Dims {
		if d != 1 {
			varying++
		}
	}
	if r := c.rank[x]; varying > 1 || r >= 0 && r < len(b.Dims) {
		return st.errorf("adding initializer %q of dims %v to a value of rank %d is %w (only a bias along one axis)", b.Name, b.Dims, r, accel.ErrUnsupported)
	}
	return nil
}

func (c *compiler) reshape(st *step, n *onnx.Node, a attrs) error {
	if len(n.Inputs) != 2 || n.Inputs[0] == "" || n.Inputs[1] == "" {
		return st.errorf("%w: %d inputs, want 2", accel.ErrInvalid, len(n.Inputs))
	}
	if err := c.tensorValue(n.Inputs[0]); err != nil {
		return st.errorf("%w", err)
	}
	st.in = []string{n.Inputs[0]}
	t, ok := c.inits[n.Inputs[1]]
	if !ok || t.DataType != onnx.Int64 {
		return st.errorf("shape %q that is not an int64 initializer is %w", n.Inputs[1], accel.ErrUnsupported)
	}
	if len(t.Dims) != 1 || len(t.Int64s) < 1 || len(t.Int64s) > accel.MaxRank {
		return st.errorf("shape %q of dims %v is %w (rank 1 to %d)", t.Name, t.Dims, accel.ErrUnsupported, accel.MaxRank)
	}
	allowZero, err := a.int("allowzero", 0)
	if err != nil {
		return err
	}
	inferred := 0
	for _, d := range t.Int64s {
		switch {
		case d == 0 && allowZero != 0:
			return st.errorf("allowzero with a 0 in shape %v is %w (no empty tensors)", t.Int64s, accel.ErrUnsupported)
		case d == -1:
			inferred++
		case d < -1 || d > accel.MaxElements:
			return st.errorf("%w: shape %v", accel.ErrInvalid, t.Int64s)
		}
	}
	if inferred > 1 {
		return st.errorf("%w: shape %v has more than one -1", accel.ErrInvalid, t.Int64s)
	}
	if r := c.rank[st.in[0]]; r >= 0 {
		for i, d := range t.Int64s {
			if d == 0 && i >= r {
				return st.errorf("%w: shape %v copies a dimension the rank-%d input lacks", accel.ErrShape, t.Int64s, r)
			}
		}
	}
	st.shape = slices.Clone(t.Int64s)
	return nil
}

// attrs reads a node's attributes, checking their kinds.
type attrs struct {
	st *step
	n  *onnx.Node
}

func (a attrs) get(name string, kind int) (onnx.Attribute, bool, error) {
	at, ok := a.n.Attr(name)
	if ok && at.Type != kind {
		return at, false, a.st.errorf("%w: attribute %q has kind %d, want %d", accel.ErrInvalid, name, at.Type, kind)
	}
	return at, ok, nil
}

func (a attrs) int(name string, def int64) (int64, error) {
	at, ok, err := a.get(name, onnx.AttrInt)
	if !ok || err != nil {
		return def, err
	}
	return at.I, nil
}

func (a attrs) bool(name string) (bool, error) {
	v, err := a.int(name, 0)
	if err == nil && v != 0 && v != 1 {
		err = a.st.errorf("%w: %s is %d, want 0 or 1", accel.ErrInvalid, name, v)
	}
	return v == 1, err
}

func (a attrs) float(name string, def float32) (float32, error) {
	at, ok, err := a.get(name, onnx.AttrFloat)
	if !ok || err != nil {
		return def, err
	}
	return at.F, nil
}

// ints reads an ints attribute of n values, each at least lo; def when
// absent. A length other than n means other than two spatial axes.
func (a attrs) ints(name string, n int, def []int, lo int) ([]int, error) {
	at, ok, err := a.get(name, onnx.AttrInts)
	if !ok || err != nil {
		return def, err
	}
	if len(at.Ints) != n {
		return nil, a.st.errorf("%s %v is %w (only 2-d, %d values)", name, at.Ints, accel.ErrUnsupported, n)
	}
	v := make([]int, n)
	for i, x := range at.Ints {
		if x < int64(lo) || x > accel.MaxElements {
			return nil, a.st.errorf("%w: %s %v", accel.ErrInvalid, name, at.Ints)
		}
		v[i] = int(x)
	}
	return v, nil
}

func (a attrs) noAutoPad() error {
	at, ok, err := a.get("auto_pad", onnx.AttrString)
	if err != nil {
		return err
	}
	if ok && at.S != "NOTSET" {
		return a.st.errorf("auto_pad %q is %w (only NOTSET)", at.S, accel.ErrUnsupported)
	}
	return nil
}

// softmaxAxis returns the step's axis for a rank-r input, which must be the
// last.
func softmaxAxis(st *step, r int) (int, error) {
	axis := st.axis
	if axis < 0 {
		axis += r
	}
	if axis < 0 || axis >= r {
		return 0, st.errorf("%w: axis %d outside rank %d", accel.ErrInvalid, st.axis, r)
	}
	if axis != r-1 {
		return 0, st.errorf("axis %d of a rank-%d input is %w (only the last)", st.axis, r, accel.ErrUnsupported)
	}
	return axis, nil
}

// Run runs the graph on s's backend with inputs in the order of Inputs(); it
// returns new tensors of s in the order of Outputs(). The inputs are left as
// they were. Intermediate tensors and uploaded initializers are freed as soon
// as no later node needs them, and everything the run allocated is freed on
// every error path, so a failed run leaves the session as it was (unless the
// session's charger refuses even the frees).
func (p *Program) Run(ctx context.Context, s *accel.Session, inputs []*accel.Tensor) (outs []*accel.Tensor, err error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", accel.ErrInvalid)
	}
	if err := p.checkInputs(inputs); err != nil {
		return nil, err
	}
	r := &runner{p: p, s: s, env: map[string]*accel.Tensor{}, owned: map[*accel.Tensor]int{}}
	defer func() {
		if err != nil {
			r.freeAll()
		}
	}()
	for i, in := range p.inputs {
		r.env[in.Name] = inputs[i]
	}
	for _, init := range p.inits {
		t, err := s.NewTensor(accel.F32, init.shape)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", init.name, err)
		}
		r.own(t)
		r.bind(init.name, t)
		if err := s.Write(t, 0, init.data); err != nil {
			return nil, fmt.Errorf("initializer %q: %w", init.name, err)
		}
	}
	for i := range p.steps {
		st := &p.steps[i]
		if err := ctx.Err(); err != nil {
			return nil, st.errorf("%w", err)
		}
		if err := r.step(ctx, i); err != nil {
			return nil, st.errorf("%w", err)
		}
	}
	return r.results()
}

func (p *Program) checkInputs(in []*accel.Tensor) error { return checkInputs(p.inputs, in) }

// checkInputs matches tensors against a graph's declared inputs: count,
// element type, rank and every fixed dimension.
func checkInputs(decl []onnx.ValueInfo, in []*accel.Tensor) error {
	if len(in) != len(decl) {
		return fmt.Errorf("%w: the model takes %d inputs, got %d", accel.ErrInvalid, len(decl), len(in))
	}
	for i, vi := range decl {
		t := in[i]
		switch {
		case t == nil:
			return fmt.Errorf("%w: input %q is missing", accel.ErrInvalid, vi.Name)
		case t.Buffer() == nil:
			return fmt.Errorf("input %q: %w", vi.Name, accel.ErrFreed)
		case t.DType() != accel.F32:
			return fmt.Errorf("%w: input %q is %s, want f32", accel.ErrInvalid, vi.Name, t)
		case vi.Dims != nil && !fits(t.Shape(), vi.Dims):
			return fmt.Errorf("%w: input %q is %s, want %s", accel.ErrShape, vi.Name, t, DimsString(vi.Dims))
		}
	}
	return nil
}

// fits reports whether shape has the declared rank and fixed dimensions;
// symbolic and unknown dimensions take any size.
func fits(shape []int, dims []onnx.Dim) bool {
	if len(shape) != len(dims) {
		return false
	}
	for i, d := range dims {
		if d.Param == "" && d.Value > 0 && int64(shape[i]) != d.Value {
			return false
		}
	}
	return true
}

// runner holds one run's values. Several names may share a tensor (Identity,
// a reshape in place), so the tensors the run allocated count their live
// names and are freed when the last one dies. Tensors the caller passed in
// are never counted, changed or freed.
type runner struct {
	p     *Program
	s     *accel.Session
	env   map[string]*accel.Tensor
	owned map[*accel.Tensor]int
}

func (r *runner) own(t *accel.Tensor) { r.owned[t] = 0 }

func (r *runner) bind(name string, t *accel.Tensor) {
	r.env[name] = t
	if n, ok := r.owned[t]; ok {
		r.owned[t] = n + 1
	}
}

// drop forgets name, freeing its tensor if no other name holds it.
func (r *runner) drop(name string) error {
	t := r.env[name]
	delete(r.env, name)
	n, ok := r.owned[t]
	if !ok {
		return nil
	}
	if n > 1 {
		r.owned[t] = n - 1
		return nil
	}
	return r.free(t)
}

func (r *runner) free(t *accel.Tensor) error {
	if err := r.s.Free(t); err != nil {
		return err
	}
	delete(r.owned, t)
	return nil
}

func (r *runner) freeAll() {
	for t := range r.owned {
		r.s.Free(t) // best effort: the run is failing already
	}
	clear(r.owned)
}

// alloc registers a tensor an op just returned.
func (r *runner) alloc(t *accel.Tensor, err error) (*accel.Tensor, error) {
	if err == nil {
		r.own(t)
	}
	return t, err
}

// copy returns a new tensor holding t's data with shape.
func (r *runner) copy(t *accel.Tensor, shape []int) (*accel.Tensor, error) {
	data := make([]byte, t.Bytes())
	if err := r.s.Read(t, 0, data); err != nil {
		return nil, err
	}
	c, err := r.alloc(r.s.NewTensor(t.DType(), shape))
	if err != nil {
		return nil, err
	}
	return c, r.s.Write(c, 0, data)
}

// reshape returns the data of the value name, held in t, with shape: t
// itself when its shape is right or nothing reads it after step i, else a
// copy, since a tensor has one shape for all its readers.
func (r *runner) reshape(i int, name string, t *accel.Tensor, shape []int) (*accel.Tensor, error) {
	if slices.Equal(t.Shape(), shape) {
		return t, nil
	}
	if n, ok := r.owned[t]; ok && n == 1 && r.p.lastUse[name] == i {
		return t, r.s.Reshape(t, shape)
	}
	if _, err := accel.NumElements(shape); err != nil {
		return nil, err
	}
	return r.copy(t, shape)
}

// step runs step i, binds its output and drops the values it read last.
func (r *runner) step(ctx context.Context, i int) error {
	st := &r.p.steps[i]
	in := make([]*accel.Tensor, len(st.in))
	for j, name := range st.in {
		if name != "" {
			in[j] = r.env[name]
		}
	}
	out, err := r.exec(ctx, i, st, in)
	if err != nil {
		return err
	}
	r.bind(st.out, out)
	for j, name := range st.in {
		if name != "" && r.p.lastUse[name] == i && !slices.Contains(st.in[:j], name) {
			if err := r.drop(name); err != nil {
				return err
			}
		}
	}
	if r.p.lastUse[st.out] == i {
		return r.drop(st.out)
	}
	return nil
}

func (r *runner) exec(ctx context.Context, i int, st *step, in []*accel.Tensor) (*accel.Tensor, error) {
	s := r.s
	switch st.kind {
	case opGemm:
		var c *accel.Tensor
		if len(in) == 3 {
			c = in[2]
		}
		if c != nil && len(c.Shape()) != 1 {
			return nil, fmt.Errorf("input C %s is %w (only [N])", c, accel.ErrUnsupported)
		}
		y, err := r.alloc(s.MatMul(ctx, in[0], in[1], st.mm))
		if err != nil || c == nil {
			return y, err
		}
		z, err := r.alloc(s.AddBias(ctx, y, c, 1))
		if err != nil {
			return nil, err
		}
		return z, r.free(y)
	case opMatMul:
		if len(in[0].Shape()) != 2 || len(in[1].Shape()) != 2 {
			return nil, fmt.Errorf("matmul of %s and %s is %w (only 2-d)", in[0], in[1], accel.ErrUnsupported)
		}
		return r.alloc(s.MatMul(ctx, in[0], in[1], accel.MatMulParams{}))
	case opConv:
		x, w := in[0], in[1]
		if len(x.Shape()) != 4 || len(w.Shape()) != 4 {
			return nil, fmt.Errorf("convolution of %s with weights %s is %w (only 2-d)", x, w, accel.ErrUnsupported)
		}
		if k := st.kernel; k != nil && (w.Shape()[2] != k[0] || w.Shape()[3] != k[1]) {
			return nil, fmt.Errorf("%w: kernel_shape %v does not match weights %s", accel.ErrShape, k, w)
		}
		var bias *accel.Tensor
		if len(in) == 3 {
			bias = in[2]
		}
		return r.alloc(s.Conv2D(ctx, x, w, bias, st.conv))
	case opRelu:
		return r.alloc(s.Relu(ctx, in[0]))
	case opSoftmax:
		if _, err := softmaxAxis(st, len(in[0].Shape())); err != nil {
			return nil, err
		}
		return r.alloc(s.Softmax(ctx, in[0]))
	case opMaxPool:
		if len(in[0].Shape()) != 4 {
			return nil, fmt.Errorf("max pooling of %s is %w (only 2-d)", in[0], accel.ErrUnsupported)
		}
		return r.alloc(s.MaxPool2D(ctx, in[0], st.pool))
	case opAdd:
		return r.add(ctx, i, st, in[0], in[1])
	case opReshape:
		shape, err := reshapeDims(in[0].Shape(), st.shape)
		if err != nil {
			return nil, err
		}
		return r.reshape(i, st.in[0], in[0], shape)
	case opFlatten:
		d := in[0].Shape()
		axis := st.axis
		if axis < 0 {
			axis += len(d)
		}
		if axis < 0 || axis > len(d) {
			return nil, fmt.Errorf("%w: axis %d outside %s", accel.ErrInvalid, st.axis, in[0])
		}
		return r.reshape(i, st.in[0], in[0], []int{product(d[:axis]), product(d[axis:])})
	case opIdentity:
		return in[0], nil
	}
	return nil, fmt.Errorf("%w: op kind %d", accel.ErrUnsupported, st.kind)
}

// add computes x + b where one operand broadcasts along a single axis of the
// other. Addition commutes bit for bit (NaNs are canonical), so either
// operand may be the bias.
func (r *runner) add(ctx context.Context, i int, st *step, a, b *accel.Tensor) (*accel.Tensor, error) {
	var x, bias *accel.Tensor
	var name string
	axis, ok := 0, false
	if st.bias != 0 {
		x, bias, name = a, b, st.in[1]
		axis, ok = biasAxis(a.Shape(), b.Shape())
	}
	if !ok && st.bias != 1 {
		x, bias, name = b, a, st.in[0]
		axis, ok = biasAxis(b.Shape(), a.Shape())
	}
	if !ok {
		return nil, fmt.Errorf("adding %s and %s is %w (only a bias along one axis)", a, b, accel.ErrUnsupported)
	}
	if len(bias.Shape()) == 1 {
		return r.alloc(r.s.AddBias(ctx, x, bias, axis))
	}
	// The bias must be 1-d: view it so, without touching a tensor someone
	// else still reads under its own shape.
	flat := []int{x.Shape()[axis]}
	n, owned := r.owned[bias]
	switch {
	case !owned || bias == x:
		tmp, err := r.copy(bias, flat)
		if err != nil {
			return nil, err
		}
		y, err := r.alloc(r.s.AddBias(ctx, x, tmp, axis))
		if err != nil {
			return nil, err
		}
		return y, r.free(tmp)
	case n == 1 && r.p.lastUse[name] == i:
		if err := r.s.Reshape(bias, flat); err != nil {
			return nil, err
		}
		return r.alloc(r.s.AddBias(ctx, x, bias, axis))
	default:
		old := slices.Clone(bias.Shape())
		if err := r.s.Reshape(bias, flat); err != nil {
			return nil, err
		}
		y, err := r.alloc(r.s.AddBias(ctx, x, bias, axis))
		if err != nil {
			return nil, err
		}
		return y, r.s.Reshape(bias, old)
	}
}

// biasAxis reports whether b, aligned to the trailing axes of x as numpy
// broadcasting does, varies along one axis of x at most and matches it
// there, and returns that axis.
func biasAxis(x, b []int) (int, bool) {
	off := len(x) - len(b)
	if off < 0 {
		return 0, false
	}
	axis, single := -1, -1
	for j, d := range b {
		xd := x[off+j]
		switch {
		case d == 1 && xd == 1:
			single = off + j
		case d == 1:
			// broadcast along this axis
		case d != xd || axis >= 0:
			return 0, false
		default:
			axis = off + j
		}
	}
	if axis < 0 {
		axis = single // a one-element b adds along an axis of size 1
	}
	return axis, axis >= 0
}

// reshapeDims resolves an ONNX Reshape shape (0 copies a dimension, -1 is
// inferred) against the input's shape.
func reshapeDims(in []int, shape []int64) ([]int, error) {
	out := make([]int, len(shape))
	inferred := -1
	known := 1
	for i, d := range shape {
		switch {
		case d == 0:
			if i >= len(in) {
				return nil, fmt.Errorf("%w: shape %v copies dimension %d of %s", accel.ErrShape, shape, i, accel.ShapeString(in))
			}
			out[i] = in[i]
		case d == -1:
			inferred = i
			continue
		default:
			out[i] = int(d)
		}
		if known > accel.MaxElements/out[i] {
			return nil, fmt.Errorf("%w: shape %v", accel.ErrOverflow, shape)
		}
		known *= out[i]
	}
	n := product(in)
	if inferred >= 0 {
		if n%known != 0 {
			return nil, fmt.Errorf("%w: cannot reshape %s to %v", accel.ErrShape, accel.ShapeString(in), shape)
		}
		out[inferred] = n / known
	}
	if product(out) != n {
		return nil, fmt.Errorf("%w: cannot reshape %s to %v", accel.ErrShape, accel.ShapeString(in), shape)
	}
	return out, nil
}

func product(d []int) int {
	n := 1
	for _, x := range d {
		n *= x
	}
	return n
}

// results hands the outputs over to the caller. An output that is one of
// the caller's inputs, or a tensor already handed over under another name,
// is copied so that every output is a new tensor of its own.
func (r *runner) results() ([]*accel.Tensor, error) {
	outs := make([]*accel.Tensor, len(r.p.outputs))
	taken := map[*accel.Tensor]bool{}
	for i, o := range r.p.outputs {
		t := r.env[o.Name]
		if _, owned := r.owned[t]; !owned || taken[t] {
			c, err := r.copy(t, t.Shape())
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
			t = c
		}
		taken[t] = true
		outs[i] = t
	}
	for t := range r.owned {
		if !taken[t] {
			if err := r.free(t); err != nil {
				return nil, err
			}
		}
	}
	clear(r.owned)
	return outs, nil
}
