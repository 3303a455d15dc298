package accel

import (
	"context"
	"fmt"
	"reflect"
	"slices"
)

// Op describes one operation of the node, once: its tensors, its
// parameters and how the guest ABI passes them, its shape rule, its cost in
// compute units, how far checked mode lets a fast kernel depart from the
// contract, and where the contract defines it. Session, the guest ABI
// (package hostfn), the op-by-op model runner, checked mode, the
// conformance corpus and the benchmarks all read it, so adding an
// operation means an entry in ops.go, a kernel in each backend, and its
// paragraphs in docs/determinism.md and docs/abi.md.
//
// Ops are values of this package (MatMul, Conv2D, ...); Ops lists them.
type Op struct {
	// Name is the operation's name in the guest ABI and in reports.
	Name string
	// Contract is the anchor of the operation's section in
	// docs/determinism.md, the numerics contract.
	Contract string
	// Inputs are the tensors the operation takes, in order.
	Inputs []Input
	// Outputs name the new tensors it returns, in order. An operation that
	// updates state in place (tsne_step) returns none.
	Outputs []string
	// OutputDTypes are the outputs' element types, in order; nil means all
	// f32.
	OutputDTypes []DType
	// Scalar names an f32 result returned beside the tensors, such as
	// tsne_step's "kl"; empty for none.
	Scalar string
	// ParamWords name the parameters as the guest ABI passes them: u32
	// words, little-endian. With ParamsByPointer they are a struct in guest
	// memory passed as params_ptr; otherwise each is an i32 argument after
	// the input handles.
	ParamWords      []string
	ParamsByPointer bool
	// Tolerance is how far checked mode lets a fast kernel's result lie
	// from the contract's.
	Tolerance Tolerance

	params reflect.Type // the Go type of the parameters
	decode func(words []uint32) (any, error)
	shape  func(in [][]int, p any) ([][]int, error)
	units  func(in, out [][]int, p any) uint64
	// scratch bounds the host memory a kernel may use beyond its tensors.
	scratch func(in, out [][]int, p any) int64
	// scalarWanted reports whether a call with p returns the scalar.
	scalarWanted func(p any) bool
	// verify checks index data before a kernel may rely on it, for a call
	// with parameters p, reading the inputs through read; nil when no input
	// holds indices.
	verify func(ctx context.Context, in []*Tensor, p any, read func(t *Tensor, first int, dst []byte) error) error
}

// Input is one tensor an operation takes.
type Input struct {
	Name  string
	DType DType
	// Optional inputs may be absent: nil in a Call, handle 0 in the ABI.
	Optional bool
	// InPlace inputs are state the operation updates. They never alias
	// another input; read-only inputs may alias each other.
	InPlace bool
	// Index inputs hold indices into other inputs. The Session checks
	// their data before a kernel reads it, and remembers the check until
	// they are written.
	Index bool
	// Checked inputs have their data checked like index inputs, for a
	// property other than indices: finite values, say.
	Checked bool
}

// OutputDType is the element type of the operation's i-th output.
func (op *Op) OutputDType(i int) DType {
	if op.OutputDTypes == nil {
		return F32
	}
	return op.OutputDTypes[i]
}

func (op *Op) String() string { return op.Name }

// NoParams are the parameters of an operation that takes none.
type NoParams struct{}

// opDef is the typed description an op is built from.
type opDef[P any] struct {
	Op
	decode       func(words []uint32) (P, error)
	shape        func(in [][]int, p P) ([][]int, error)
	units        func(in, out [][]int, p P) uint64
	scratch      func(in, out [][]int, p P) int64
	scalarWanted func(p P) bool
}

// define erases the types of d's functions into an Op.
func define[P any](d opDef[P]) *Op {
	op := d.Op
	op.params = reflect.TypeFor[P]()
	op.decode = func(w []uint32) (any, error) {
		if len(w) != len(op.ParamWords) {
			return nil, fmt.Errorf("%w: %d parameter words, want %d", ErrInvalid, len(w), len(op.ParamWords))
		}
		if d.decode == nil {
			var zero P
			return zero, nil
		}
		return d.decode(w)
	}
	op.shape = func(in [][]int, p any) ([][]int, error) { return d.shape(in, p.(P)) }
	op.units = func(in, out [][]int, p any) uint64 { return d.units(in, out, p.(P)) }
	if d.scalarWanted != nil {
		op.scalarWanted = func(p any) bool { return d.scalarWanted(p.(P)) }
	}
	if d.scratch != nil {
		op.scratch = func(in, out [][]int, p any) int64 { return d.scratch(in, out, p.(P)) }
	}
	return &op
}

// Ops lists every operation, in the order docs/abi.md gives them.
func Ops() []*Op { return slices.Clone(ops) }

// LookupOp finds an operation by name.
func LookupOp(name string) (*Op, bool) {
	for _, op := range ops {
		if op.Name == name {
			return op, true
		}
	}
	return nil, false
}

// DecodeParams reads the operation's parameters from their ABI words, in
// the order of ParamWords.
func (op *Op) DecodeParams(words []uint32) (any, error) { return op.decode(words) }

// Shapes checks the parameters against the input shapes (nil for an absent
// optional input) and returns the shapes of the outputs.
func (op *Op) Shapes(in [][]int, p any) ([][]int, error) {
	if err := op.checkParams(p); err != nil {
		return nil, err
	}
	if len(in) != len(op.Inputs) {
		return nil, fmt.Errorf("%w: %d inputs, want %d", ErrInvalid, len(in), len(op.Inputs))
	}
	for i, s := range in {
		if s == nil && !op.Inputs[i].Optional {
			return nil, fmt.Errorf("%w: %s is missing", ErrInvalid, op.Inputs[i].Name)
		}
	}
	out, err := op.shape(in, p)
	if err != nil {
		return nil, err
	}
	for _, s := range out {
		if _, err := NumElements(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Units is the cost of a call from its input and output shapes (Shapes'
// result); docs/abi.md lists every formula.
func (op *Op) Units(in, out [][]int, p any) uint64 { return op.units(in, out, p) }

// Scratch is the most host memory, in bytes, that a kernel may use beyond
// the call's tensors while it runs: a packed copy of matmul's operands, an
// im2col buffer, t-SNE's new state. The Session counts it against the
// tensor-memory limit for the call, so that what a guest makes the node
// hold stays within its limits whatever serves it; backends must stay
// within it. It depends on shapes alone, so every backend refuses the same
// calls.
func (op *Op) Scratch(in, out [][]int, p any) int64 {
	if op.scratch == nil {
		return 0
	}
	return op.scratch(in, out, p)
}

// WantsScalar reports whether a call with p returns the operation's scalar.
func (op *Op) WantsScalar(p any) bool {
	return op.Scalar != "" && (op.scalarWanted == nil || op.scalarWanted(p))
}

func (op *Op) checkParams(p any) error {
	if p == nil || reflect.TypeOf(p) != op.params {
		return fmt.Errorf("%w: %s takes %s parameters, not %T", ErrInvalid, op.Name, op.params, p)
	}
	return nil
}

// Kernel computes one operation on a backend's buffers. The Session has
// checked everything before: the inputs are live tensors of the backend
// with the op's dtypes and shapes that fit, index data is in range, the
// outputs are freshly allocated with the shapes the op's rule gives, and
// the parameters are valid. A kernel may rely on that and must not
// re-check. It must stop promptly, between bounded pieces of work, once ctx
// is done.
type Kernel func(ctx context.Context, c *Call) error

// Call is one call of an operation as a kernel sees it.
type Call struct {
	Op   *Op
	Mode Mode
	// In holds the inputs in the order of Op.Inputs, nil for an absent
	// optional one; Out the outputs in the order of Op.Outputs.
	In, Out []*Tensor
	// Params is the op's parameters, of its own type (MatMulParams, ...).
	Params any
	// WantScalar asks for the op's scalar result, which the kernel stores
	// in Scalar.
	WantScalar bool
	Scalar     float32
}

// Tolerance bounds how far checked mode lets a fast kernel's output lie
// from the contract's (docs/determinism.md, "Checked mode's bounds"): each
// compared element passes when
//
//	|got − want| ≤ 2·T·u·scale + T·2^-149
//
// with u = 2^-24, T = Terms(c), and scale chosen by Scale. A zero Tolerance
// (Terms nil) asks for the same bits, NaN payloads aside. A NaN must meet a
// NaN and an infinity the same infinity.
type Tolerance struct {
	// Terms counts the roundings behind one output: the products summed,
	// say. nil means exact.
	Terms func(c *Call) int
	Scale Scale
	// Compare names the results checked: outputs, in-place inputs or the
	// scalar. Empty means every output.
	Compare []string
}

// Scale is what a tolerance is relative to.
type Scale int

const (
	// ScaleAbs is the same operation computed on the absolute values of
	// the inputs (the magnitude behind a dot product), element by element.
	ScaleAbs Scale = iota
	// ScaleWant is the contract's value of the element itself.
	ScaleWant
	// ScaleMaxWant is the largest contract value among the compared
	// elements.
	ScaleMaxWant
)
