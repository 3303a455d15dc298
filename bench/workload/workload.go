// Package workload defines what `accelnode bench` measures: each workload
// is one host-callable computation at a range of sizes, with its FLOP and
// byte counts and deterministic inputs. It builds for the host and for the
// benchmark guest (GOOS=wasip1), so that a backend called from Go, a guest
// calling the host and a guest computing alone all do the same work on the
// same data.
package workload

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/accelnode/accelnode/accel"
)

// Spec is a workload: one operation of the node's op table, or a whole
// model, on inputs whose shape grows with Size.
type Spec struct {
	// Name identifies the workload, such as "matmul-dense" or "conv2d-resnet50".
	Name string
	// Op is the operation it calls; nil for the whole-model workload, which
	// runs the CNN through the model ABI (OpName "model").
	Op *accel.Op
	// SizeName says what the size counts, such as "n" or "batch".
	SizeName string
	// Summary describes the workload for reports.
	Summary string
	// Sizes is the full sweep, Quick a short one that still runs every path.
	Sizes, Quick []int
	// MaxSize is the largest size accepted. Each is set from the
	// workload's own tensors and FLOPs (see specs), so that a mistyped size
	// is refused rather than left running for hours.
	MaxSize int
}

// ModelOp is the op name of the whole-model workload in reports and in
// --ops: it runs a model, not one operation of the op table.
const ModelOp = "model"

// OpName is the name of the operation the workload calls, or ModelOp.
func (s Spec) OpName() string {
	if s.Op == nil {
		return ModelOp
	}
	return s.Op.Name
}

// Sizes of the fixed layers.
const (
	denseIn, denseOut = 1024, 1024
	tsneNeighbours    = 90 // 3·perplexity at perplexity 30, as exact t-SNE codes use
)

// The largest sizes keep one run within a few GiB of tensors (a session
// holds 4 GiB by default) and within minutes on a CPU backend at 100
// GFLOP/s: matmul-square 16384 is 3 GiB and 8.8 TFLOP; matmul-dense 262144
// rows 2 GiB and 0.56 TFLOP; conv2d-mnist 16384 images 1.5 GB; conv2d-resnet50
// 1024 images 1.6 GB and 0.24 TFLOP; a t-SNE step over 70,000 points, the
// size of MNIST, 64 GFLOP (it grows as N²); the CNN on 8192 images 43 GFLOP
// and about 1.4 GB of activations.
var specs = []Spec{
	{Name: "matmul-square", Op: accel.MatMul, SizeName: "n",
		Summary: "square product [n,n]·[n,n]",
		Sizes:   []int{64, 128, 256, 512, 1024, 2048, 4096, 8192}, Quick: []int{64, 128}, MaxSize: 16384},
	{Name: "matmul-dense", Op: accel.MatMul, SizeName: "rows",
		Summary: fmt.Sprintf("dense layer [rows,%d]·[%d,%d]: tall and skinny; memory-bound at few rows", denseIn, denseIn, denseOut),
		Sizes:   []int{1, 8, 64, 512, 4096, 32768}, Quick: []int{1, 16}, MaxSize: 262144},
	{Name: "conv2d-mnist", Op: accel.Conv2D, SizeName: "batch",
		Summary: "MNIST first layer: [batch,1,28,28] * [32,1,3,3]",
		Sizes:   []int{1, 16, 128, 1024}, Quick: []int{1, 16}, MaxSize: 16384},
	{Name: "conv2d-resnet50", Op: accel.Conv2D, SizeName: "batch",
		Summary: "ResNet-50 3×3 layer: [batch,64,56,56] * [64,64,3,3], pad 1",
		Sizes:   []int{1, 4, 16, 64}, Quick: []int{1}, MaxSize: 1024},
	{Name: "tsne", Op: accel.TSNEStep, SizeName: "points",
		Summary: fmt.Sprintf("one exact t-SNE step in 2-D, %d neighbours a point in P", tsneNeighbours),
		Sizes:   []int{1000, 2000, 5000, 10000, 20000, 70000}, Quick: []int{1000}, MaxSize: 70000},
	{Name: "model-cnn", SizeName: "batch",
		Summary: "whole ONNX model: the MNIST CNN (conv 32, pool, conv 64, pool, dense 128, dense 10, softmax)",
		Sizes:   []int{1, 16, 256, 1024}, Quick: []int{1, 16}, MaxSize: 8192},
}

// Specs returns every workload, in report order.
func Specs() []Spec { return slices.Clone(specs) }

// Find returns the workload called name.
func Find(name string) (Spec, error) {
	for _, s := range specs {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return Spec{}, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(names, ", "))
}

// Ops lists the names of the operations the workloads call, in report
// order, ModelOp among them.
func Ops() []string {
	var names []string
	for _, s := range specs {
		if !slices.Contains(names, s.OpName()) {
			names = append(names, s.OpName())
		}
	}
	return names
}

// Point is a workload at one size.
type Point struct {
	Spec
	Size int
}

// At returns the workload at size.
func (s Spec) At(size int) Point { return Point{s, size} }

// Validate rejects sizes the workload cannot take: below 1, above MaxSize,
// or shapes the op refuses.
func (p Point) Validate() error {
	if p.Size < 1 {
		return fmt.Errorf("%s: size %d must be at least 1", p.Name, p.Size)
	}
	if p.Size > p.MaxSize {
		top := p.At(p.MaxSize)
		return fmt.Errorf("%s: %s = %d is above the largest it accepts, %d (one run there is %.4g GFLOP on %.3g GiB of tensors)",
			p.Name, p.SizeName, p.Size, p.MaxSize, top.FLOPs()/1e9, top.Bytes()/(1<<30))
	}
	if p.Op == accel.TSNEStep && p.Size <= tsneNeighbours {
		return fmt.Errorf("%s: %d points are too few for %d neighbours", p.Name, p.Size, tsneNeighbours)
	}
	if b := p.Bytes(); b > float64(accel.DefaultLimits.MaxBytes) {
		return fmt.Errorf("%s at %s %d: its tensors need %.1f GiB, over a session's %d GiB", p.Name, p.SizeName, p.Size, b/(1<<30), accel.DefaultLimits.MaxBytes>>30)
	}
	for _, t := range p.shapes() {
		n := 1
		for _, d := range t {
			if d > accel.MaxElements/n {
				return fmt.Errorf("%s at %s %d: a tensor of %v exceeds %d elements", p.Name, p.SizeName, p.Size, t, accel.MaxElements)
			}
			n *= d
		}
	}
	if p.Op != nil {
		if _, err := p.Op.Shapes(p.inputShapes(), p.Params()); err != nil {
			return fmt.Errorf("%s at %s %d: %w", p.Name, p.SizeName, p.Size, err)
		}
	}
	return nil
}

// inputShapes are the shapes of the op's inputs, in the op's order, or of
// the model's.
func (p Point) inputShapes() [][]int {
	n := p.Size
	switch p.Name {
	case "matmul-square", "matmul-dense":
		s := p.shapes()
		return [][]int{s[0], s[1]}
	case "conv2d-mnist", "conv2d-resnet50":
		c := p.conv()
		return [][]int{c.x, c.w, {c.w[0]}}
	case "tsne":
		nnz := n * tsneNeighbours
		return [][]int{{n + 1}, {nnz}, {nnz}, {n, 2}, {n, 2}, {n, 2}}
	case "model-cnn":
		return [][]int{{n, 1, 28, 28}}
	}
	return nil
}

// InputElements counts the elements of the point's inputs: what a guest
// draws and uploads before it can time anything. The zero Point has none.
func (p Point) InputElements() int {
	n := 0
	for _, s := range p.inputShapes() {
		n += product(s)
	}
	return n
}

// Params are the parameters the point's op takes (accel.MatMulParams, ...);
// nil for the whole-model workload.
func (p Point) Params() any {
	switch p.Op {
	case accel.MatMul:
		return accel.MatMulParams{}
	case accel.Conv2D:
		return p.Conv2DParams()
	case accel.TSNEStep:
		return p.TSNEParams()
	}
	return nil
}

// shapes are the point's input and output shapes.
func (p Point) shapes() [][]int {
	n := p.Size
	switch p.Name {
	case "matmul-square":
		return [][]int{{n, n}, {n, n}, {n, n}}
	case "matmul-dense":
		return [][]int{{n, denseIn}, {denseIn, denseOut}, {n, denseOut}}
	case "conv2d-mnist", "conv2d-resnet50":
		c := p.conv()
		return [][]int{c.x, c.w, c.out}
	case "tsne":
		return [][]int{{n, 2}, {n * tsneNeighbours}}
	case "model-cnn":
		return [][]int{{n, 1, 28, 28}, {n, 32, 26, 26}, {n, 10}}
	}
	return nil
}

// Shape describes the point's tensors, such as "1024x1024x1024" (m×k×n).
func (p Point) Shape() string {
	n := p.Size
	switch p.Name {
	case "matmul-square":
		return fmt.Sprintf("%dx%dx%d", n, n, n)
	case "matmul-dense":
		return fmt.Sprintf("%dx%dx%d", n, denseIn, denseOut)
	case "conv2d-mnist", "conv2d-resnet50":
		c := p.conv()
		return fmt.Sprintf("%s*%s", dims(c.x), dims(c.w))
	case "tsne":
		return fmt.Sprintf("N=%d,nnz=%d", n, n*tsneNeighbours)
	case "model-cnn":
		return fmt.Sprintf("%dx1x28x28", n)
	}
	return ""
}

func dims(d []int) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, "x")
}

// FLOPs counts the point's floating-point operations, a multiply-add as
// two. A t-SNE step counts 13 per ordered pair of points (two differences,
// a squared distance, one plus it, its reciprocal, the sum of q, q² and
// two force accumulations), 12 per nonzero of P and 20 per point.
func (p Point) FLOPs() float64 {
	n := float64(p.Size)
	switch p.Name {
	case "matmul-square":
		return 2 * n * n * n
	case "matmul-dense":
		return 2 * n * denseIn * denseOut
	case "conv2d-mnist", "conv2d-resnet50":
		c := p.conv()
		return 2 * float64(product(c.out)) * float64(c.w[1]*c.w[2]*c.w[3])
	case "tsne":
		return 13*n*(n-1) + 12*n*tsneNeighbours + 20*n
	case "model-cnn":
		return n * cnnFLOPsPerImage
	}
	return 0
}

// Bytes is the least memory traffic the point needs: every input read and
// every output written once, in 4-byte elements.
func (p Point) Bytes() float64 {
	n := float64(p.Size)
	switch p.Name {
	case "tsne":
		// read P (row pointers, columns, values); read and write Y, update
		// and gains.
		return 4*(n+1) + 8*n*tsneNeighbours + 3*2*2*4*n
	case "model-cnn":
		return 4*n*(28*28+10) + 4*cnnWeights
	}
	var elems int
	for _, s := range p.shapes() {
		elems += product(s)
	}
	return 4 * float64(elems)
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// convShape is a convolution's shapes and parameters.
type convShape struct {
	x, w, out []int
	params    accel.Conv2DParams
}

func (p Point) conv() convShape {
	one := accel.Conv2DParams{StrideH: 1, StrideW: 1, DilationH: 1, DilationW: 1, Groups: 1}
	if p.Name == "conv2d-mnist" {
		return convShape{x: []int{p.Size, 1, 28, 28}, w: []int{32, 1, 3, 3}, out: []int{p.Size, 32, 26, 26}, params: one}
	}
	same := one
	same.PadTop, same.PadLeft, same.PadBottom, same.PadRight = 1, 1, 1, 1
	return convShape{x: []int{p.Size, 64, 56, 56}, w: []int{64, 64, 3, 3}, out: []int{p.Size, 64, 56, 56}, params: same}
}

// Conv2DParams are a convolution workload's parameters.
func (p Point) Conv2DParams() accel.Conv2DParams { return p.conv().params }

// TSNEParams are the step's hyperparameters: the momentum and learning
// rate of t-SNE's late iterations, without exaggeration or KL.
func (p Point) TSNEParams() accel.TSNEParams {
	return accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01}
}

// Tensor is one input, with either F32 or I32 data.
type Tensor struct {
	Name  string
	Shape []int
	F32   []float32
	I32   []int32
}

// Inputs draws the point's inputs from a generator seeded by the point, so
// that the host and the guest draw the same ones. Matmul and conv2d take
// (a, b) and (x, w, bias); tsne_step takes rowptr, cols, vals, y, update and
// gains; a model takes its input x.
func (p Point) Inputs() []Tensor {
	var in []Tensor
	p.EachInput(func(t Tensor) error { in = append(in, t); return nil })
	return in
}

// EachInput draws the inputs as Inputs does and hands them to f one at a
// time, so that a caller that uploads each can drop it before the next is
// drawn: a guest then needs memory for one large input, not all of them.
// It stops at f's first error.
func (p Point) EachInput(f func(Tensor) error) error {
	for _, draw := range p.inputDraws() {
		if err := f(draw()); err != nil {
			return err
		}
	}
	return nil
}

// inputDraws returns one function per input that draws it, to be called in
// order: they share the generator.
func (p Point) inputDraws() []func() Tensor {
	r := rand.New(rand.NewPCG(uint64(p.Size), uint64(len(p.Name))))
	uniform := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = (r.Float32()*2 - 1) * scale
		}
		return v
	}
	f32 := func(name string, scale float32, shape ...int) func() Tensor {
		return func() Tensor { return Tensor{Name: name, Shape: shape, F32: uniform(product(shape), scale)} }
	}
	s := p.shapes()
	switch p.Name {
	case "matmul-square", "matmul-dense":
		return []func() Tensor{f32("a", 1, s[0]...), f32("b", 1, s[1]...)}
	case "conv2d-mnist", "conv2d-resnet50":
		c := p.conv()
		return []func() Tensor{f32("x", 1, c.x...), f32("w", 0.1, c.w...), f32("bias", 0.1, c.w[0])}
	case "tsne":
		var all []Tensor // drawn together: P's rows and the embedding share the draws
		draws := make([]func() Tensor, 6)
		for i := range draws {
			draws[i] = func() Tensor {
				if all == nil {
					all = p.tsneInputs(r)
				}
				return all[i]
			}
		}
		return draws
	case "model-cnn":
		return []func() Tensor{f32("x", 1, p.Size, 1, 28, 28)}
	}
	return nil
}

// tsneInputs is a P with tsneNeighbours distinct random neighbours per
// point, values summing to one, and an embedding spread as t-SNE's early
// iterations leave it.
func (p Point) tsneInputs(r *rand.Rand) []Tensor {
	n, k := p.Size, tsneNeighbours
	rowptr := make([]int32, n+1)
	cols := make([]int32, 0, n*k)
	vals := make([]float32, 0, n*k)
	seen := map[int32]bool{}
	for i := range n {
		clear(seen)
		row := make([]int32, 0, k)
		for len(row) < k {
			j := int32(r.IntN(n))
			if int(j) == i || seen[j] {
				continue
			}
			seen[j] = true
			row = append(row, j)
		}
		slices.Sort(row)
		cols = append(cols, row...)
		for range k {
			vals = append(vals, float32(0.5+r.Float64())/float32(n*k))
		}
		rowptr[i+1] = int32(len(cols))
	}
	y := make([]float32, 2*n)
	for i := range y {
		y[i] = float32(r.NormFloat64() * math.Sqrt(float64(n)) * 0.05)
	}
	gains := make([]float32, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	return []Tensor{
		{Name: "rowptr", Shape: []int{n + 1}, I32: rowptr},
		{Name: "cols", Shape: []int{len(cols)}, I32: cols},
		{Name: "vals", Shape: []int{len(vals)}, F32: vals},
		{Name: "y", Shape: []int{n, 2}, F32: y},
		{Name: "update", Shape: []int{n, 2}, F32: make([]float32, 2*n)},
		{Name: "gains", Shape: []int{n, 2}, F32: gains},
	}
}

// Fingerprint identifies the workloads' definitions, so that the node can
// refuse a benchmark guest built from other ones: every workload's shape,
// counts, parameters and inputs at its smallest quick size, and the model.
func Fingerprint() string { return fingerprint() }

var fingerprint = sync.OnceValue(func() string {
	h := fnv.New64a()
	for _, s := range specs {
		p := s.At(s.Quick[0])
		fmt.Fprintf(h, "%s:%s:%s:%s:%g:%g:%+v:%+v;", s.Name, s.OpName(), s.SizeName, p.Shape(), p.FLOPs(), p.Bytes(), p.Conv2DParams(), p.TSNEParams())
		for _, t := range p.Inputs() {
			fmt.Fprintf(h, "%s%v", t.Name, t.Shape)
			binary.Write(h, binary.LittleEndian, t.F32)
			binary.Write(h, binary.LittleEndian, t.I32)
		}
	}
	h.Write(CNN())
	return fmt.Sprintf("%016x", h.Sum64())
})
