package models

// A Program is checked and ordered once by Compile. A run first plans every
// node from the run's input shapes: its output's shape and the accel
// operations it maps onto, which give the run's cost before anything runs.
// It then charges that cost once and carries the plan out on an
// accel.Session, so every backend (and every determinism mode) that serves
// a Session runs the model, and the charge is the same on every backend.

import (
	"context"
	"fmt"
	"maps"
	"math"
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
	weights uint64        // float elements in all the initializers
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

// step is one node with its attributes parsed.
type step struct {
	op     string // ONNX op type, for messages
	desc   string // `node "name"`, or the node's index when it has no name
	rule   *onnxOp
	in     []string // tensor inputs; "" for an omitted optional one
	consts []string // constant inputs, read at compile time
	out    string
	params any // what rule.compile parsed, for rule.plan
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
		if t.DataType == onnx.Float {
			p.weights += uint64(len(t.Floats))
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

	// Constant nodes are folded here, as initializers of their outputs.
	nodes := make([]onnx.Node, 0, len(g.Nodes))
	index := make([]int, 0, len(g.Nodes)) // each node's index in the graph, for messages
	var folded []onnx.Tensor
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if n.OpType != "Constant" || (n.Domain != "" && n.Domain != "ai.onnx") {
			nodes = append(nodes, *n)
			index = append(index, i)
			continue
		}
		t, err := constantTensor(n)
		if err != nil {
			return nil, fmt.Errorf("onnx op %q (%s): %w", n.OpType, nodeDesc(n, i), err)
		}
		if defined[t.Name] || slices.ContainsFunc(folded, func(f onnx.Tensor) bool { return f.Name == t.Name }) {
			return nil, fmt.Errorf("%w: value %q is defined twice (again by %s)", accel.ErrInvalid, t.Name, nodeDesc(n, i))
		}
		folded = append(folded, t)
	}
	for i := range folded {
		t := &folded[i]
		if t.DataType == onnx.Float {
			p.weights += uint64(len(t.Floats))
		}
		c.inits[t.Name] = t
		c.rank[t.Name] = len(t.Dims)
		defined[t.Name] = true
	}

	order, err := topoSort(nodes, defined)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{} // float initializers read by a node or output
	for _, i := range order {
		st, err := c.compile(&nodes[i], index[i])
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
			return nil, fmt.Errorf("graph output %q of element type %d (%s) is %w (only FLOAT)", out.Name, out.ElemType, elemTypeName(out.ElemType), accel.ErrUnsupported)
		}
		used[out.Name] = true
		p.lastUse[out.Name] = len(p.steps)
		p.outputs = append(p.outputs, cloneValueInfo(out))
	}

	// Upload in graph order, so that runs allocate the same way every time.
	for _, t := range slices.Concat(ptrs(g.Initializers), ptrs(folded)) {
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

func ptrs(ts []onnx.Tensor) []*onnx.Tensor {
	p := make([]*onnx.Tensor, len(ts))
	for i := range ts {
		p[i] = &ts[i]
	}
	return p
}

// constantTensor reads a Constant node as the initializer of its output:
// its value attribute (a tensor of FLOAT, INT64 or INT32 elements), or
// value_float, value_floats, value_int or value_ints.
func constantTensor(n *onnx.Node) (onnx.Tensor, error) {
	outs := n.Outputs
	if len(n.Inputs) != 0 || len(outs) != 1 || outs[0] == "" {
		return onnx.Tensor{}, fmt.Errorf("%w: a Constant takes no inputs and gives one output", accel.ErrInvalid)
	}
	if len(n.Attrs) != 1 {
		return onnx.Tensor{}, fmt.Errorf("%w: a Constant has exactly one value attribute, got %d attributes", accel.ErrInvalid, len(n.Attrs))
	}
	a := n.Attrs[0]
	t := onnx.Tensor{Name: outs[0]}
	switch {
	case a.Name == "value" && a.Type == onnx.AttrTensor && a.T != nil:
		t.Dims, t.DataType = slices.Clone(a.T.Dims), a.T.DataType
		t.Floats, t.Int64s, t.Int32s = slices.Clone(a.T.Floats), slices.Clone(a.T.Int64s), slices.Clone(a.T.Int32s)
		if t.DataType != onnx.Float && t.DataType != onnx.Int64 && t.DataType != onnx.Int32 {
			return onnx.Tensor{}, fmt.Errorf("a value of element type %d (%s) is %w (only FLOAT, INT64 and INT32)", t.DataType, elemTypeName(t.DataType), accel.ErrUnsupported)
		}
	case a.Name == "value_float" && a.Type == onnx.AttrFloat:
		t.DataType, t.Floats = onnx.Float, []float32{a.F}
	case a.Name == "value_floats" && a.Type == onnx.AttrFloats:
		t.DataType, t.Dims, t.Floats = onnx.Float, []int64{int64(len(a.Floats))}, slices.Clone(a.Floats)
	case a.Name == "value_int" && a.Type == onnx.AttrInt:
		t.DataType, t.Int64s = onnx.Int64, []int64{a.I}
	case a.Name == "value_ints" && a.Type == onnx.AttrInts:
		t.DataType, t.Dims, t.Int64s = onnx.Int64, []int64{int64(len(a.Ints))}, slices.Clone(a.Ints)
	default:
		return onnx.Tensor{}, fmt.Errorf("attribute %q of kind %d is %w (only value, value_float(s), value_int(s))", a.Name, a.Type, accel.ErrUnsupported)
	}
	if err := checkInitializer(&t); err != nil {
		return onnx.Tensor{}, err
	}
	return t, nil
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
		return fmt.Errorf("graph input %q of element type %d (%s) is %w (only FLOAT)", in.Name, in.ElemType, elemTypeName(in.ElemType), accel.ErrUnsupported)
	case len(in.Dims) > accel.MaxRank:
		return fmt.Errorf("graph input %q of rank %d is %w (rank 0 to %d)", in.Name, len(in.Dims), accel.ErrUnsupported, accel.MaxRank)
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
// where the graph says enough, and when a run is planned otherwise.
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

func (c *compiler) compile(n *onnx.Node, i int) (step, error) {
	st := step{op: n.OpType, desc: nodeDesc(n, i)}
	rule, ok := onnxOps[n.OpType]
	if !ok || (n.Domain != "" && n.Domain != "ai.onnx") {
		op := n.OpType
		if n.Domain != "" {
			op = n.Domain + "." + op
		}
		return st, fmt.Errorf("onnx op %q (%s) is %w", op, st.desc, accel.ErrUnsupported)
	}
	st.rule = rule
	params, rank, err := c.node(&st, n, rule)
	if err != nil {
		return st, st.errorf("%w", err)
	}
	st.params = params
	c.rank[st.out] = rank
	return st, nil
}

// node checks a node's attributes, outputs and inputs against its rule and
// compiles it.
func (c *compiler) node(st *step, n *onnx.Node, rule *onnxOp) (any, int, error) {
	for _, a := range n.Attrs {
		if !slices.Contains(rule.attrs, a.Name) {
			return nil, 0, fmt.Errorf("attribute %q is %w", a.Name, accel.ErrUnsupported)
		}
	}
	outs := n.Outputs
	for len(outs) > 0 && outs[len(outs)-1] == "" {
		outs = outs[:len(outs)-1] // omitted optional outputs
	}
	if len(outs) != 1 || outs[0] == "" {
		return nil, 0, fmt.Errorf("%d outputs are %w (only one)", len(n.Outputs), accel.ErrUnsupported)
	}
	st.out = outs[0]
	if err := c.inputs(st, n, rule); err != nil {
		return nil, 0, err
	}
	return rule.compile(c, st, attrs{n: n})
}

// knownRank reports whether name's rank is known and differs from want.
func (c *compiler) knownRank(name string, want int) bool {
	r := c.rank[name]
	return r >= 0 && r != want
}

// inputs checks the node's input count and that each input but the
// constants is a tensor value.
func (c *compiler) inputs(st *step, n *onnx.Node, rule *onnxOp) error {
	lo, hi := rule.minIn, rule.maxIn
	ins := n.Inputs
	for len(ins) > lo && ins[len(ins)-1] == "" {
		ins = ins[:len(ins)-1]
	}
	if len(ins) < lo || len(ins) > hi {
		want := fmt.Sprint(lo)
		if hi > lo {
			want = fmt.Sprintf("%d to %d", lo, hi)
		}
		return fmt.Errorf("%w: %d inputs, want %s", accel.ErrInvalid, len(n.Inputs), want)
	}
	tensors := min(len(ins), rule.maxIn-rule.consts)
	for j, in := range ins {
		if in == "" && j < lo {
			return fmt.Errorf("%w: required input %d is omitted", accel.ErrInvalid, j)
		}
		if in == "" || j >= tensors {
			continue
		}
		if err := c.tensorValue(in); err != nil {
			return err
		}
	}
	st.in = slices.Clone(ins[:tensors])
	st.consts = slices.Clone(ins[tensors:])
	return nil
}

// attrs reads a node's attributes, checking their kinds.
type attrs struct{ n *onnx.Node }

func (a attrs) get(name string, kind int) (onnx.Attribute, bool, error) {
	at, ok := a.n.Attr(name)
	if ok && at.Type != kind {
		return at, false, fmt.Errorf("%w: attribute %q has kind %d, want %d", accel.ErrInvalid, name, at.Type, kind)
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
		err = fmt.Errorf("%w: %s is %d, want 0 or 1", accel.ErrInvalid, name, v)
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
		return nil, fmt.Errorf("%s %v is %w (only 2-d, %d values)", name, at.Ints, accel.ErrUnsupported, n)
	}
	v := make([]int, n)
	for i, x := range at.Ints {
		if x < int64(lo) || x > accel.MaxElements {
			return nil, fmt.Errorf("%w: %s %v", accel.ErrInvalid, name, at.Ints)
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
		return fmt.Errorf("auto_pad %q is %w (only NOTSET)", at.S, accel.ErrUnsupported)
	}
	return nil
}

// runPlan is one run worked out from its input shapes before it starts.
type runPlan struct {
	nodes   []nodePlan // one per step
	outputs [][]int    // the graph outputs' ONNX shapes, rank 0 for a scalar
	units   uint64
}

// plan works out a run with inputs of these shapes: every node's output
// shape, the accel operations it runs, and the run's cost (see Units). Every
// shape the run will meet is checked here, before any work.
func (p *Program) plan(shapes [][]int) (*runPlan, error) {
	if err := checkShapes(p.inputs, shapes); err != nil {
		return nil, err
	}
	env := make(map[string][]int, len(p.inputs)+len(p.inits)+len(p.steps))
	var in uint64
	for i, vi := range p.inputs {
		env[vi.Name] = shapes[i]
		if scalar(vi) {
			env[vi.Name] = []int{} // passed as [1]
		}
		in += elements(shapes[i])
	}
	for _, init := range p.inits {
		env[init.name] = init.shape
	}
	pl := &runPlan{nodes: make([]nodePlan, len(p.steps))}
	var compute uint64
	for i := range p.steps {
		st := &p.steps[i]
		ins := make([][]int, len(st.in))
		for j, name := range st.in {
			if name != "" {
				ins[j] = env[name]
			}
		}
		np, err := st.rule.plan(st.params, ins)
		if err != nil {
			return nil, st.errorf("%w", err)
		}
		for k := range np.calls {
			compute = addSat(compute, np.calls[k].units())
		}
		env[st.out] = np.out
		pl.nodes[i] = np
	}
	var out uint64
	for _, o := range p.outputs {
		s := env[o.Name]
		pl.outputs = append(pl.outputs, s)
		out += elements(s)
	}
	pl.units = addSat(ioUnits(in, out, p.weights), compute)
	return pl, nil
}

// Units is the cost in compute units of a run with inputs of these shapes,
// which Run charges once before anything runs:
//
//	64 + 4·(elements of the inputs + elements of the outputs
//	        + elements of the model's float initializers)
//	   + the units of every accel operation the nodes map onto
//
// Each node's output shape follows from its input shapes by the rules the
// run uses. Gemm costs a matmul, and with C an add_bias where C is [N],
// else a binary add; MatMul a matmul,
// or a batch_matmul where an operand has batch axes (a vector as a one-row
// or one-column matrix); Conv a conv2d; Relu and
// MaxPool their operations; Softmax a softmax, between two transposes
// where its axis is not the last; Transpose a transpose; Concat a concat
// for each input past the first;
// LayerNormalization a layer_norm; Dropout nothing; Clip a clip; GlobalAveragePool a
// global_avgpool; Abs, Neg, Sqrt, Reciprocal, LeakyRelu, HardSigmoid,
// HardSwish, Exp, Log, Tanh, Sigmoid and Erf a unary; Add an add, an add_bias where one
// operand broadcasts along one axis, else a binary add; Sub, Mul and Div a
// binary; Reshape, Flatten and Identity nothing. Constant nodes are
// folded at compile time and count as initializers. A scalar counts as one
// element.
func (p *Program) Units(inputShapes [][]int) (uint64, error) {
	pl, err := p.plan(inputShapes)
	if err != nil {
		return 0, err
	}
	return pl.units, nil
}

// ioUnits is the cost of moving a run's data: the call itself, the inputs
// in, the outputs out and the initializers up, one unit per byte; every
// element the node passes is 4 bytes.
func ioUnits(in, out, weights uint64) uint64 {
	return addSat(accel.CallUnits, mulSat(4, addSat(addSat(in, out), weights)))
}

func elements(shape []int) uint64 {
	n := uint64(1)
	for _, d := range shape {
		n = mulSat(n, uint64(d))
	}
	return n
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func mulSat(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}

// Run runs the graph on s's backend with inputs in the order of Inputs(); it
// returns new tensors of s in the order of Outputs(), a scalar as a [1]
// tensor. Every input and every shape the run meets is checked first; then
// the run's Units are charged through s, once, and nothing inside the run
// is charged again. The inputs are left as they were. Intermediate tensors
// and uploaded initializers are freed as soon as no later node needs them,
// and everything the run allocated is freed on every error path, so a
// failed run leaves the session as it was.
func (p *Program) Run(ctx context.Context, s *accel.Session, inputs []*accel.Tensor) ([]*accel.Tensor, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", accel.ErrInvalid)
	}
	if err := checkInputs(p.inputs, inputs); err != nil {
		return nil, err
	}
	pl, err := p.plan(shapesOf(inputs))
	if err != nil {
		return nil, err
	}
	var outs []*accel.Tensor
	err = s.Prepaid(pl.units, func() error {
		var err error
		outs, err = p.execute(ctx, s, pl, inputs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return outs, nil
}

func shapesOf(ts []*accel.Tensor) [][]int {
	shapes := make([][]int, len(ts))
	for i, t := range ts {
		shapes[i] = t.Shape()
	}
	return shapes
}

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
		}
		want, ok := dtypeOf(vi.ElemType)
		switch {
		case !ok:
			return fmt.Errorf("%w: input %q is declared %s, which no tensor can pass (a FLOAT input takes an f32 tensor, an INT32 input an i32 tensor)", accel.ErrInvalid, vi.Name, elemTypeName(vi.ElemType))
		case t.DType() != want:
			return fmt.Errorf("%w: input %q is %s, want %s: the model declares it %s", accel.ErrInvalid, vi.Name, t, want, elemTypeName(vi.ElemType))
		case vi.Dims != nil && !fits(t.Shape(), vi.Dims):
			return fmt.Errorf("%w: input %q is %s, want %s", accel.ErrShape, vi.Name, t, declared(vi))
		}
	}
	return nil
}

// checkShapes matches input shapes against a graph's declared inputs: count,
// rank and every fixed dimension.
func checkShapes(decl []onnx.ValueInfo, shapes [][]int) error {
	if len(shapes) != len(decl) {
		return fmt.Errorf("%w: the model takes %d inputs, got %d", accel.ErrInvalid, len(decl), len(shapes))
	}
	for i, vi := range decl {
		if _, err := accel.NumElements(shapes[i]); err != nil {
			return fmt.Errorf("input %q: %w", vi.Name, err)
		}
		if vi.Dims != nil && !fits(shapes[i], vi.Dims) {
			return fmt.Errorf("%w: input %q is %s, want %s", accel.ErrShape, vi.Name, accel.ShapeString(shapes[i]), declared(vi))
		}
	}
	return nil
}

// dtypeOf is the tensor dtype that passes a value of ONNX element type t.
func dtypeOf(t int) (accel.DType, bool) {
	switch t {
	case onnx.Float:
		return accel.F32, true
	case onnx.Int32:
		return accel.I32, true
	}
	return 0, false
}

// elemTypeNames are ONNX's names for its element types
// (TensorProto.DataType).
var elemTypeNames = []string{"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
	"STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"}

func elemTypeName(t int) string {
	if t >= 0 && t < len(elemTypeNames) {
		return elemTypeNames[t]
	}
	return fmt.Sprintf("element type %d", t)
}

// declared formats v's declared shape for messages.
func declared(v onnx.ValueInfo) string {
	if scalar(v) {
		return "a scalar, passed as [1]"
	}
	return DimsString(v.Dims)
}

// scalar reports whether v is declared rank 0.
func scalar(v onnx.ValueInfo) bool { return v.Dims != nil && len(v.Dims) == 0 }

// Fits reports whether shape has the declared rank and fixed dimensions;
// symbolic and unknown dimensions take any size. A value declared rank 0
// is passed as [1].
func Fits(shape []int, dims []onnx.Dim) bool { return fits(shape, dims) }

func fits(shape []int, dims []onnx.Dim) bool {
	if len(dims) == 0 {
		return len(shape) == 1 && shape[0] == 1
	}
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

// execute carries out a plan.
func (p *Program) execute(ctx context.Context, s *accel.Session, pl *runPlan, inputs []*accel.Tensor) (outs []*accel.Tensor, err error) {
	r := &runner{p: p, plan: pl, s: s, env: map[string]*accel.Tensor{}, owned: map[*accel.Tensor]int{}}
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

// runner holds one run's values. Several names may share a tensor (Identity,
// Reshape, Flatten), so the tensors the run allocated count their live names
// and are freed when the last one dies. A value's tensor may hold any shape
// of its elements: each operation views its arguments in the shapes the plan
// gives them, and the outputs get theirs at the end. Tensors the caller
// passed in are never counted or freed, and keep their shapes.
type runner struct {
	p     *Program
	plan  *runPlan
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

// copy returns a new tensor holding t's data with shape.
func (r *runner) copy(t *accel.Tensor, shape []int) (*accel.Tensor, error) {
	data := make([]byte, t.Bytes())
	if err := r.s.Read(t, 0, data); err != nil {
		return nil, err
	}
	c, err := r.s.NewTensor(t.DType(), shape)
	if err != nil {
		return nil, err
	}
	r.own(c)
	return c, r.s.Write(c, 0, data)
}

// step runs step i's plan, binds its output and drops the values it read
// last.
func (r *runner) step(ctx context.Context, i int) error {
	st, np := &r.p.steps[i], &r.plan.nodes[i]
	in := make([]*accel.Tensor, len(st.in))
	for j, name := range st.in {
		if name != "" {
			in[j] = r.env[name]
		}
	}
	out := in[0] // a node without operations gives its first input's data
	var last *accel.Tensor
	for k := range np.calls {
		c := &np.calls[k]
		args := make([]*accel.Tensor, len(c.args))
		for j, a := range c.args {
			switch a {
			case prev:
				args[j] = last
			case absent:
			default:
				args[j] = in[a]
			}
		}
		y, err := r.call(ctx, c, args)
		if err != nil {
			return err
		}
		if last != nil {
			if err := r.free(last); err != nil {
				return err
			}
		}
		last = y
	}
	if last != nil {
		out = last
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

// call runs one accel operation on args, each viewed in the shape the plan
// gives it and given its own shape back afterwards. A tensor the operation
// reads twice in two shapes is copied for the second.
func (r *runner) call(ctx context.Context, c *opCall, args []*accel.Tensor) (*accel.Tensor, error) {
	type view struct {
		t     *accel.Tensor
		shape []int
	}
	var views []view
	var copies []*accel.Tensor
	undo := func(err error) error {
		for _, v := range slices.Backward(views) {
			if e := r.s.Reshape(v.t, v.shape); e != nil && err == nil {
				err = e
			}
		}
		for _, t := range copies {
			if e := r.free(t); e != nil && err == nil {
				err = e
			}
		}
		return err
	}
	for k, t := range args {
		want := c.in[k]
		if t == nil || slices.Equal(t.Shape(), want) {
			continue
		}
		shared := false
		for j, u := range args {
			if j != k && u == t && !slices.Equal(c.in[j], want) {
				shared = true
			}
		}
		if shared {
			cp, err := r.copy(t, want)
			if cp != nil {
				copies = append(copies, cp)
			}
			if err != nil {
				return nil, undo(err)
			}
			args[k] = cp
			continue
		}
		views = append(views, view{t, slices.Clone(t.Shape())})
		if err := r.s.Reshape(t, want); err != nil {
			return nil, undo(err)
		}
	}
	outs, _, err := r.s.Run(ctx, c.op, c.params, args...)
	if err == nil {
		r.own(outs[0])
	}
	if err := undo(err); err != nil {
		return nil, err
	}
	return outs[0], nil
}

// results hands the outputs over to the caller, each in its own shape. An
// output that is one of the caller's inputs, or a tensor already handed
// over under another name, is copied so that every output is a new tensor
// of its own.
func (r *runner) results() ([]*accel.Tensor, error) {
	outs := make([]*accel.Tensor, len(r.p.outputs))
	taken := map[*accel.Tensor]bool{}
	for i, o := range r.p.outputs {
		t, shape := r.env[o.Name], tensorShape(r.plan.outputs[i])
		if _, owned := r.owned[t]; !owned || taken[t] {
			c, err := r.copy(t, shape)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
			t = c
		} else if !slices.Equal(t.Shape(), shape) {
			if err := r.s.Reshape(t, shape); err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
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
