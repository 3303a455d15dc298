package ort

import (
	"context"
	"fmt"
	"iter"
	"math"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/models/onnx"
)

// kernels maps every operation to its kernel. Each sends the calls that
// onORT accepts to ONNX Runtime (b.viaORT) and the rest to the contract's
// CPU kernel.
func (b *Backend) kernels() accel.Kernels {
	b.viaORT = accel.Kernels{
		accel.MatMul:    b.matMul,
		accel.Conv2D:    b.conv2D,
		accel.AddBias:   b.addBias,
		accel.Relu:      b.relu,
		accel.MaxPool2D: b.maxPool2D,
		accel.Softmax:   b.softmax,
		accel.Add:       b.add,
	}
	strict := b.strict.Table()
	table := accel.Kernels{
		// Exact t-SNE as ONNX graphs is 20-50 times slower than the
		// contract's kernel and holds large intermediates.
		accel.TSNEStep: strict[accel.TSNEStep],
	}
	for op, k := range b.viaORT {
		table[op] = route(strict[op], k)
	}
	return table
}

// route serves a call on ONNX Runtime when onORT accepts it, else on the
// contract's kernel.
func route(strict, onnxRuntime accel.Kernel) accel.Kernel {
	return func(ctx context.Context, c *accel.Call) error {
		if onORT(c) {
			return onnxRuntime(ctx, c)
		}
		return strict(ctx, c)
	}
}

// onORT decides where a call runs: on ONNX Runtime unless it is too small to
// repay a run's fixed cost (routing.go) or its inputs hold special values
// that ONNX Runtime's kernel gets wrong.
func onORT(c *accel.Call) bool {
	if small(c) {
		return false
	}
	switch c.Op {
	case accel.Conv2D:
		// ONNX Runtime multiplies padding by zero, which differs from
		// skipping it only where a weight is infinite or NaN.
		p := c.Params.(accel.Conv2DParams)
		padded := p.PadTop+p.PadLeft+p.PadBottom+p.PadRight > 0
		return !padded || !notFinite(hostmem.F32(c.In[1]))
	case accel.MaxPool2D:
		// ONNX Runtime's MaxPool drops NaN, and some of its paths start
		// a window from the largest negative float, so that a window of
		// -Inf and padding gives -MaxFloat32. The scan costs a third of a
		// nanosecond an element, a fraction of ONNX Runtime's pooling.
		return !nanOrNegInf(hostmem.F32(c.In[0]))
	}
	return true
}

// notFinite reports whether v holds NaN or ±Inf, nanOrNegInf whether it
// holds NaN or -Inf: one or two comparisons an element, which NaN fails.
func notFinite(v []float32) bool {
	for _, x := range v {
		if !(x >= -math.MaxFloat32 && x <= math.MaxFloat32) {
			return true
		}
	}
	return false
}

func nanOrNegInf(v []float32) bool {
	for _, x := range v {
		if !(x >= -math.MaxFloat32) {
			return true
		}
	}
	return false
}

// opSession returns the cached session of an operation's graph, creating it
// with build on first use; the caller releases it.
func (b *Backend) opSession(ctx context.Context, key string, build func() *onnx.Model) (*cacheEntry, error) {
	return b.ops.acquire(ctx, key, func() (created, error) {
		m := build()
		s, err := b.newSession(onnx.Marshal(m), valueNames(m.Graph.Inputs), valueNames(m.Graph.Outputs))
		if err != nil {
			return created{}, fmt.Errorf("%w: create session: %w", accel.ErrDevice, err)
		}
		return created{session: s}, nil
	})
}

// ONNX Runtime checks for termination between the nodes of a graph, not
// inside a kernel, so a call that would take long is run as several
// pieces, each its own run on part of the tensors: a deadline then stops
// it within one piece. A piece does at most about pieceOps multiply-adds
// or comparisons, or touches at most pieceElems elements: some tens of
// milliseconds on all the cores of a current CPU, under half a second on
// one, and big enough that ONNX Runtime's kernels run at full speed
// (matmul pieces of an eighth of the size measured up to three times
// slower, the packing of B no longer amortised). Tests make them small.
var (
	pieceOps   = 1 << 33
	pieceElems = 1 << 24
)

// piece is one run of an operation's graph on slices of the call's tensors.
type piece struct {
	in, out             [][]float32
	inShapes, outShapes [][]int
}

// split divides count items of work units each into runs of at most
// limit units, at least one item each, and yields their bounds.
func split(count int, work float64, limit int) iter.Seq2[int, int] {
	step := max(1, int(float64(limit)/max(work, 1)))
	return func(yield func(lo, hi int) bool) {
		for lo := 0; lo < count; lo += step {
			if !yield(lo, min(lo+step, count)) {
				return
			}
		}
	}
}

// runPieces runs the graph cached under key on each piece in turn.
func (b *Backend) runPieces(ctx context.Context, key string, build func() *onnx.Model, pieces iter.Seq[piece]) error {
	e, err := b.opSession(ctx, key, build)
	if err != nil {
		return err
	}
	defer b.ops.release(e)
	for p := range pieces {
		in, err := wrap(p.in, p.inShapes)
		if err != nil {
			return err
		}
		out, err := wrap(p.out, p.outShapes)
		if err != nil {
			in.destroy()
			return err
		}
		b.pieces.Add(1)
		if err := runOp(ctx, e.session, in, out); err != nil {
			return err
		}
	}
	return nil
}

// matMul runs Gemm on blocks of the rows of op(A) and C. Where A is stored
// transposed, a block's rows are columns of A, copied out (still
// transposed) for the run.
func (b *Backend) matMul(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.MatMulParams)
	a, bm := c.In[0], c.In[1]
	m, k, n, _ := accel.MatMulDims(a.Shape(), bm.Shape(), p)
	A, B, C := hostmem.F32(a), hostmem.F32(bm), hostmem.F32(c.Out[0])
	pieces := func(yield func(piece) bool) {
		var scratch []float32
		for lo, hi := range split(m, float64(k)*float64(n), pieceOps) {
			rows := hi - lo
			pa, shapeA := A[lo*k:hi*k], []int{rows, k}
			switch {
			case p.TransA && rows == m:
				pa, shapeA = A, a.Shape()
			case p.TransA:
				if cap(scratch) < k*rows {
					scratch = make([]float32, k*rows)
				}
				pa, shapeA = scratch[:k*rows], []int{k, rows}
				for q := range k {
					copy(pa[q*rows:(q+1)*rows], A[q*m+lo:q*m+hi])
				}
			}
			if !yield(piece{
				in: [][]float32{pa, B}, inShapes: [][]int{shapeA, bm.Shape()},
				out: [][]float32{C[lo*n : hi*n]}, outShapes: [][]int{{rows, n}},
			}) {
				return
			}
		}
	}
	key := fmt.Sprintf("matmul transA=%t transB=%t", p.TransA, p.TransB)
	return b.runPieces(ctx, key, func() *onnx.Model { return matMulGraph(p.TransA, p.TransB) }, pieces)
}

// conv2D runs Conv on blocks of images, and where one image is too much
// for a piece and there is one group, on blocks of its output channels.
func (b *Backend) conv2D(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.Conv2DParams)
	x, w, bias, y := c.In[0], c.In[1], c.In[2], c.Out[0]
	xs, ws, ys := x.Shape(), w.Shape(), y.Shape()
	images, oc := xs[0], ws[0]
	imageIn, imageOut := xs[1]*xs[2]*xs[3], oc*ys[2]*ys[3]
	filter := ws[1] * ws[2] * ws[3]
	X, W, Y := hostmem.F32(x), hostmem.F32(w), hostmem.F32(y)
	var Bias []float32
	if bias != nil {
		Bias = hostmem.F32(bias)
	}
	// block is the piece of images [i0, i1) and output channels [o0, o1).
	block := func(i0, i1, o0, o1 int) piece {
		outPlane := ys[2] * ys[3]
		pc := piece{
			in:        [][]float32{X[i0*imageIn : i1*imageIn], W[o0*filter : o1*filter]},
			inShapes:  [][]int{{i1 - i0, xs[1], xs[2], xs[3]}, {o1 - o0, ws[1], ws[2], ws[3]}},
			out:       [][]float32{Y[i0*imageOut+o0*outPlane : (i1-1)*imageOut+o1*outPlane]},
			outShapes: [][]int{{i1 - i0, o1 - o0, ys[2], ys[3]}},
		}
		if Bias != nil {
			pc.in, pc.inShapes = append(pc.in, Bias[o0:o1]), append(pc.inShapes, []int{o1 - o0})
		}
		return pc
	}
	perImage := float64(imageOut) * float64(filter)
	pieces := func(yield func(piece) bool) {
		if perImage <= float64(pieceOps) || p.Groups > 1 {
			for i0, i1 := range split(images, perImage, pieceOps) {
				if !yield(block(i0, i1, 0, oc)) {
					return
				}
			}
			return
		}
		for i := range images {
			for o0, o1 := range split(oc, perImage/float64(oc), pieceOps) {
				if !yield(block(i, i+1, o0, o1)) {
					return
				}
			}
		}
	}
	key := fmt.Sprintf("conv2d %+v bias=%t", p, bias != nil)
	return b.runPieces(ctx, key, func() *onnx.Model { return convGraph(p, bias != nil) }, pieces)
}

// maxPool2D runs MaxPool on blocks of the input's planes, each plane an
// image of one channel.
func (b *Backend) maxPool2D(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.Pool2DParams)
	xs, ys := c.In[0].Shape(), c.Out[0].Shape()
	X, Y := hostmem.F32(c.In[0]), hostmem.F32(c.Out[0])
	inPlane, outPlane := xs[2]*xs[3], ys[2]*ys[3]
	pieces := func(yield func(piece) bool) {
		for lo, hi := range split(xs[0]*xs[1], float64(outPlane)*float64(p.KernelH*p.KernelW), pieceOps) {
			if !yield(piece{
				in: [][]float32{X[lo*inPlane : hi*inPlane]}, inShapes: [][]int{{hi - lo, 1, xs[2], xs[3]}},
				out: [][]float32{Y[lo*outPlane : hi*outPlane]}, outShapes: [][]int{{hi - lo, 1, ys[2], ys[3]}},
			}) {
				return
			}
		}
	}
	key := fmt.Sprintf("maxpool2d %+v", p)
	return b.runPieces(ctx, key, func() *onnx.Model { return maxPoolGraph(p) }, pieces)
}

// rows runs a graph of any rank on blocks of rows of width elements: every
// input and output is viewed as [len/width, width].
func (b *Backend) rows(ctx context.Context, key string, build func() *onnx.Model, c *accel.Call, width int) error {
	in, out := make([][]float32, len(c.In)), hostmem.F32(c.Out[0])
	for i, t := range c.In {
		in[i] = hostmem.F32(t)
	}
	pieces := func(yield func(piece) bool) {
		for lo, hi := range split(len(out)/width, float64(width), pieceElems) {
			pc := piece{out: [][]float32{out[lo*width : hi*width]}, outShapes: [][]int{{hi - lo, width}}}
			for _, v := range in {
				pc.in, pc.inShapes = append(pc.in, v[lo*width:hi*width]), append(pc.inShapes, []int{hi - lo, width})
			}
			if !yield(pc) {
				return
			}
		}
	}
	return b.runPieces(ctx, key, build, pieces)
}

func (b *Backend) relu(ctx context.Context, c *accel.Call) error {
	return b.rows(ctx, "relu", reluGraph, c, 1)
}

func (b *Backend) add(ctx context.Context, c *accel.Call) error {
	return b.rows(ctx, "add", addGraph, c, 1)
}

// softmax works along the last axis: its rows are the pieces' rows.
func (b *Backend) softmax(ctx context.Context, c *accel.Call) error {
	shape := c.In[0].Shape()
	return b.rows(ctx, "softmax", softmaxGraph, c, shape[len(shape)-1])
}

// addBias runs Add on x viewed as [outer, dim, inner] and the bias as
// [dim, 1], which broadcasts along the axis, in blocks of outer rows. Along
// axis 0 there is one outer row, so one run: it streams at most
// accel.MaxElements elements, a fraction of a second.
func (b *Backend) addBias(ctx context.Context, c *accel.Call) error {
	shape := c.In[0].Shape()
	axis := c.Params.(accel.AddBiasParams).Axis
	dim, inner := shape[axis], 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	X, Bias, Y := hostmem.F32(c.In[0]), hostmem.F32(c.In[1]), hostmem.F32(c.Out[0])
	row := dim * inner
	pieces := func(yield func(piece) bool) {
		for lo, hi := range split(len(X)/row, float64(row), pieceElems) {
			if !yield(piece{
				in:       [][]float32{X[lo*row : hi*row], Bias},
				inShapes: [][]int{{hi - lo, dim, inner}, {dim, 1}},
				out:      [][]float32{Y[lo*row : hi*row]}, outShapes: [][]int{{hi - lo, dim, inner}},
			}) {
				return
			}
		}
	}
	return b.runPieces(ctx, "add", addGraph, pieces)
}
