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
		accel.MatMul:        b.matMul,
		accel.Conv2D:        b.conv2D,
		accel.AddBias:       b.addBias,
		accel.Relu:          b.relu,
		accel.MaxPool2D:     b.maxPool2D,
		accel.Softmax:       b.softmax,
		accel.Add:           b.add,
		accel.Clip:          b.clip,
		accel.GlobalAvgPool: b.globalAvgPool,
	}
	strict := b.strict.Table()
	table := accel.Kernels{
		// Exact t-SNE as ONNX graphs is 20-50 times slower than the
		// contract's kernel and holds large intermediates.
		accel.TSNEStep: strict[accel.TSNEStep],
	}
	// ONNX Runtime's inference build has no gradient operators, and the
	// contract's kernels serve these as fast as graphs of its forward
	// ones (ConvTranspose, ReduceSum, Where) would.
	// Nor has it anything for t-SNE's affinities (a k-nearest-neighbour
	// search and a per-point bisection) or an embedding's quality.
	// Unary, binary, transpose, concat, slice, gather and layer_norm run on
	// the contract's kernels too: a few operations or a move per element,
	// where a graph would add its run's fixed cost. So does batch_matmul,
	// for now: each product on the contract's matmul kernel.
	for _, op := range []*accel.Op{accel.Conv2DBackwardData, accel.Conv2DBackwardFilter, accel.MaxPool2DBackward,
		accel.ReluBackward, accel.ReduceSum, accel.SoftmaxCrossEntropy, accel.SGDMomentum, accel.Adam,
		accel.TSNEAffinities, accel.EmbeddingQuality, accel.Unary, accel.Binary, accel.Transpose, accel.LayerNorm, accel.BatchMatMul, accel.Concat,
		accel.Slice, accel.Gather} {
		table[op] = strict[op]
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
	case accel.Softmax:
		// ONNX Runtime runs a row whole, so a row longer than a piece
		// would be one run that a deadline cannot stop: one of 2^28
		// elements took 5 to 8 s where its memory was first touched in
		// the run (a VM that backs memory lazily), 0.4 s otherwise. The
		// contract's kernel works through a long row in segments.
		shape := c.In[0].Shape()
		return shape[len(shape)-1] <= pieceElems
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
// it within one piece. A piece does at most about pieceOps multiply-adds,
// or touches at most pieceElems elements: some tens of milliseconds on all
// the cores of a current CPU, under half a second on one, and big enough
// that ONNX Runtime's kernels run at full speed (matmul pieces of an
// eighth of the size measured up to three times slower, the packing of B
// no longer amortised). Tests make them small.
var (
	pieceOps   = 1 << 33
	pieceElems = 1 << 24
)

// Some of ONNX Runtime's kernels do far less in a nanosecond than Gemm's
// 130 or so multiply-adds (two x86-64 cores with AVX-512): grouped and
// depthwise Conv 2 to 10 multiply-adds, MaxPool 0.7 to 25 comparisons,
// depending on the window. Their pieces get that much less work.
const (
	groupedSlowdown = 1 << 6
	poolSlowdown    = 1 << 7
)

// graph is an operation's graph, built on first use, and the key its
// session is cached under.
type graph struct {
	key   string
	build func() *onnx.Model
}

// piece is one run of an operation's graph on slices of the call's
// tensors. graph, where not nil, replaces the call's graph for the piece:
// a part of an image keeps only the padding at the image's edges.
type piece struct {
	graph               *graph
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

// runPieces runs g, or a piece's own graph, on each piece in turn.
func (b *Backend) runPieces(ctx context.Context, g graph, pieces iter.Seq[piece]) error {
	held := map[string]*cacheEntry{}
	defer func() {
		for _, e := range held {
			b.ops.release(e)
		}
	}()
	for p := range pieces {
		pg := g
		if p.graph != nil {
			pg = *p.graph
		}
		e := held[pg.key]
		if e == nil {
			var err error
			if e, err = b.opSession(ctx, pg.key, pg.build); err != nil {
				return err
			}
			held[pg.key] = e
		}
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
	return b.runPieces(ctx, graph{key, func() *onnx.Model { return matMulGraph(p.TransA, p.TransB) }}, pieces)
}

// conv2D runs Conv on blocks of images, and where one image is too much
// for a piece, on blocks of its output channels: of whole groups where
// there are several, each block then a convolution of as many groups on
// their input channels.
func (b *Backend) conv2D(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.Conv2DParams)
	x, w, bias, y := c.In[0], c.In[1], c.In[2], c.Out[0]
	xs, ws, ys := x.Shape(), w.Shape(), y.Shape()
	images, oc := xs[0], ws[0]
	inPlane, outPlane := xs[2]*xs[3], ys[2]*ys[3]
	imageIn, imageOut := xs[1]*inPlane, oc*outPlane
	filter := ws[1] * ws[2] * ws[3]
	X, W, Y := hostmem.F32(x), hostmem.F32(w), hostmem.F32(y)
	var Bias []float32
	if bias != nil {
		Bias = hostmem.F32(bias)
	}
	// An image splits into units: its groups, or with one group its
	// output channels, each unitOut output channels from unitIn input
	// channels.
	units, unitOut, unitIn := oc, 1, xs[1]
	if p.Groups > 1 {
		units, unitOut, unitIn = p.Groups, oc/p.Groups, ws[1]
	}
	// block is the piece of images [i0, i1) and units [u0, u1): one
	// image unless it holds every unit.
	block := func(i0, i1, u0, u1 int) piece {
		o0, o1 := u0*unitOut, u1*unitOut
		c0, c1 := 0, xs[1]
		pc := piece{
			out:       [][]float32{Y[i0*imageOut+o0*outPlane : (i1-1)*imageOut+o1*outPlane]},
			outShapes: [][]int{{i1 - i0, o1 - o0, ys[2], ys[3]}},
		}
		if p.Groups > 1 && u1-u0 < units {
			c0, c1 = u0*unitIn, u1*unitIn
			pp := p
			pp.Groups = u1 - u0
			g := convGraphOf(pp, bias != nil)
			pc.graph = &g
		}
		pc.in = [][]float32{X[i0*imageIn+c0*inPlane : (i1-1)*imageIn+c1*inPlane], W[o0*filter : o1*filter]}
		pc.inShapes = [][]int{{i1 - i0, c1 - c0, xs[2], xs[3]}, {o1 - o0, ws[1], ws[2], ws[3]}}
		if Bias != nil {
			pc.in, pc.inShapes = append(pc.in, Bias[o0:o1]), append(pc.inShapes, []int{o1 - o0})
		}
		return pc
	}
	limit := pieceOps
	if p.Groups > 1 {
		limit /= groupedSlowdown
	}
	perImage := float64(imageOut) * float64(filter)
	pieces := func(yield func(piece) bool) {
		if perImage <= float64(limit) {
			for i0, i1 := range split(images, perImage, limit) {
				if !yield(block(i0, i1, 0, units)) {
					return
				}
			}
			return
		}
		for i := range images {
			for u0, u1 := range split(units, perImage/float64(units), limit) {
				if !yield(block(i, i+1, u0, u1)) {
					return
				}
			}
		}
	}
	return b.runPieces(ctx, convGraphOf(p, bias != nil), pieces)
}

func convGraphOf(p accel.Conv2DParams, bias bool) graph {
	return graph{fmt.Sprintf("conv2d %+v bias=%t", p, bias), func() *onnx.Model { return convGraph(p, bias) }}
}

// maxPool2D runs MaxPool on blocks of the input's planes, each plane an
// image of one channel. Where one plane is too much for a piece, it runs
// on bands of a plane's output rows, or where one row is too much, on
// parts of a row, each on the input its windows reach (the part of a row
// copied out) and with the padding of the plane's edges it lies at.
func (b *Backend) maxPool2D(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.Pool2DParams)
	xs, ys := c.In[0].Shape(), c.Out[0].Shape()
	X, Y := hostmem.F32(c.In[0]), hostmem.F32(c.Out[0])
	H, W, OH, OW := xs[2], xs[3], ys[2], ys[3]
	inPlane, outPlane := H*W, OH*OW
	window := float64(p.KernelH) * float64(p.KernelW)
	limit := pieceOps / poolSlowdown
	whole := poolGraphOf(p)
	if float64(outPlane)*window <= float64(limit) {
		pieces := func(yield func(piece) bool) {
			for lo, hi := range split(xs[0]*xs[1], float64(outPlane)*window, limit) {
				if !yield(piece{
					in: [][]float32{X[lo*inPlane : hi*inPlane]}, inShapes: [][]int{{hi - lo, 1, H, W}},
					out: [][]float32{Y[lo*outPlane : hi*outPlane]}, outShapes: [][]int{{hi - lo, 1, OH, OW}},
				}) {
					return
				}
			}
		}
		return b.runPieces(ctx, whole, pieces)
	}
	rows, cols := max(1, int(float64(limit)/(float64(OW)*window))), OW
	if float64(OW)*window > float64(limit) {
		cols = max(1, int(float64(limit)/window))
	}
	pieces := func(yield func(piece) bool) {
		var scratch []float32
		for pl := range xs[0] * xs[1] {
			xp, yp := X[pl*inPlane:(pl+1)*inPlane], Y[pl*outPlane:(pl+1)*outPlane]
			for r0 := 0; r0 < OH; r0 += rows {
				r1 := min(r0+rows, OH)
				tile := p
				var ih0, ih1 int
				ih0, ih1, tile.PadTop, tile.PadBottom = reach(r0, r1, p.StrideH, p.PadTop, p.KernelH, H)
				for c0 := 0; c0 < OW; c0 += cols {
					c1 := min(c0+cols, OW)
					h, w, in := ih1-ih0, W, xp[ih0*W:ih1*W]
					if cols < OW {
						var iw0, iw1 int
						iw0, iw1, tile.PadLeft, tile.PadRight = reach(c0, c1, p.StrideW, p.PadLeft, p.KernelW, W)
						w = iw1 - iw0
						if cap(scratch) < h*w {
							scratch = make([]float32, h*w)
						}
						in = scratch[:h*w]
						for r := range h {
							copy(in[r*w:(r+1)*w], xp[(ih0+r)*W+iw0:(ih0+r)*W+iw1])
						}
					}
					g := poolGraphOf(tile)
					if !yield(piece{
						graph: &g,
						in:    [][]float32{in}, inShapes: [][]int{{1, 1, h, w}},
						out: [][]float32{yp[r0*OW+c0 : (r1-1)*OW+c1]}, outShapes: [][]int{{1, 1, r1 - r0, c1 - c0}},
					}) {
						return
					}
				}
			}
		}
	}
	return b.runPieces(ctx, whole, pieces)
}

func poolGraphOf(p accel.Pool2DParams) graph {
	return graph{fmt.Sprintf("maxpool2d %+v", p), func() *onnx.Model { return maxPoolGraph(p) }}
}

// reach returns the input positions [lo, hi) along an axis of size n that
// the windows of the outputs [o0, o1) reach, and how far those windows
// reach into the padding before and after them. The piece of outputs
// [o0, o1) is then the pooling of positions [lo, hi) with that padding.
func reach(o0, o1, stride, pad, kernel, n int) (lo, hi, padLo, padHi int) {
	first, last := o0*stride-pad, (o1-1)*stride-pad+kernel
	lo, hi = max(first, 0), min(last, n)
	return lo, hi, lo - first, last - hi
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
	return b.runPieces(ctx, graph{key, build}, pieces)
}

func (b *Backend) relu(ctx context.Context, c *accel.Call) error {
	return b.rows(ctx, "relu", reluGraph, c, 1)
}

func (b *Backend) add(ctx context.Context, c *accel.Call) error {
	return b.rows(ctx, "add", addGraph, c, 1)
}

// clip runs Clip with the bounds as the graph's constants, on blocks of
// rows of one element.
func (b *Backend) clip(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.ClipParams)
	key := fmt.Sprintf("clip %#x %#x", math.Float32bits(p.Min), math.Float32bits(p.Max))
	return b.rows(ctx, key, func() *onnx.Model { return clipGraph(p) }, c, 1)
}

// globalAvgPool runs GlobalAveragePool on blocks of the input's planes,
// each an image of one channel, [planes, 1, H, W].
func (b *Backend) globalAvgPool(ctx context.Context, c *accel.Call) error {
	xs := c.In[0].Shape()
	X, Y := hostmem.F32(c.In[0]), hostmem.F32(c.Out[0])
	plane := xs[2] * xs[3]
	pieces := func(yield func(piece) bool) {
		for lo, hi := range split(xs[0]*xs[1], float64(plane), pieceElems) {
			if !yield(piece{
				in: [][]float32{X[lo*plane : hi*plane]}, inShapes: [][]int{{hi - lo, 1, xs[2], xs[3]}},
				out: [][]float32{Y[lo:hi]}, outShapes: [][]int{{hi - lo, 1, 1, 1}},
			}) {
				return
			}
		}
	}
	return b.runPieces(ctx, graph{"global_avgpool", globalAvgPoolGraph}, pieces)
}

// softmax works along the last axis: its rows are the pieces' rows.
func (b *Backend) softmax(ctx context.Context, c *accel.Call) error {
	shape := c.In[0].Shape()
	return b.rows(ctx, "softmax", softmaxGraph, c, shape[len(shape)-1])
}

// addBias runs Add on x viewed as [outer, dim, inner] and the bias as
// [dim, 1], which broadcasts along the axis, or where inner is 1, on x as
// [outer, dim] and the bias as a vector: on blocks of outer rows, or where
// a row is more than a piece, on blocks of its bias positions, or where
// one position's elements are, on blocks of them.
func (b *Backend) addBias(ctx context.Context, c *accel.Call) error {
	shape := c.In[0].Shape()
	axis := c.Params.(accel.AddBiasParams).Axis
	dim, inner := shape[axis], 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	X, Bias, Y := hostmem.F32(c.In[0]), hostmem.F32(c.In[1]), hostmem.F32(c.Out[0])
	row := dim * inner
	// block is the elements from first on of rows outer rows of the bias
	// positions [d0, d1), each position with n elements.
	block := func(first, rows, d0, d1, n int) piece {
		size := rows * (d1 - d0) * n
		xs, bs := []int{rows, d1 - d0, n}, []int{d1 - d0, 1}
		if n == 1 {
			xs, bs = xs[:2], bs[:1]
		}
		return piece{
			in:       [][]float32{X[first : first+size], Bias[d0:d1]},
			inShapes: [][]int{xs, bs},
			out:      [][]float32{Y[first : first+size]}, outShapes: [][]int{xs},
		}
	}
	// ONNX Runtime's Add takes about 40 ns a segment beyond its elements,
	// a segment being a run of x that one row of the bias applies to: of
	// inner elements, or with inner 1, a whole row. Rows of two elements
	// took 24 ns an element, of a thousand 0.6.
	segment, segments := float64(segmentElems), float64(dim)
	if inner == 1 {
		segments = 1
	}
	perRow := float64(row) + segment*segments
	pieces := func(yield func(piece) bool) {
		if perRow <= float64(pieceElems) {
			for lo, hi := range split(len(X)/row, perRow, pieceElems) {
				if !yield(block(lo*row, hi-lo, 0, dim, inner)) {
					return
				}
			}
			return
		}
		perPosition := float64(inner) + segment
		if inner == 1 {
			perPosition = 1
		}
		for o := range len(X) / row {
			for d0, d1 := range split(dim, perPosition, pieceElems) {
				if inner <= pieceElems {
					if !yield(block(o*row+d0*inner, 1, d0, d1, inner)) {
						return
					}
					continue
				}
				for i0, i1 := range split(inner, 1, pieceElems) {
					if !yield(block(o*row+d0*inner+i0, 1, d0, d1, i1-i0)) {
						return
					}
				}
			}
		}
	}
	return b.runPieces(ctx, graph{"add", addGraph}, pieces)
}

// segmentElems is what a segment of Add's broadcast costs, in elements.
const segmentElems = 64
