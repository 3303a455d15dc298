package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Threads per block of the elementwise and per-output kernels.
const blockThreads = 256

// The strict matmul's block tile and slice depth (kernels/matmul.cu).
const (
	mmTile  = 128
	mmSlice = 16
)

// kernels is the backend's kernel table for variant v: every operation,
// computed by v's kernels, and in the fast variant by cuBLAS for matmul and
// cuDNN for the convolutions it can take. The kernels read the shapes the
// Session checked and touch device memory only on the owner goroutine.
func (b *Backend) kernels(v variant) accel.Kernels {
	return accel.Kernels{
		accel.MatMul: func(ctx context.Context, c *accel.Call) error {
			return b.matMul(ctx, v, c.Out[0], c.In[0], c.In[1], c.Params.(accel.MatMulParams))
		},
		accel.Conv2D: func(ctx context.Context, c *accel.Call) error {
			return b.conv2D(ctx, v, c.Out[0], c.In[0], c.In[1], c.In[2], c.Params.(accel.Conv2DParams))
		},
		accel.AddBias: func(ctx context.Context, c *accel.Call) error {
			return b.addBias(ctx, v, c.Out[0], c.In[0], c.In[1], c.Params.(accel.AddBiasParams).Axis)
		},
		accel.Relu:    func(ctx context.Context, c *accel.Call) error { return b.relu(ctx, v, c.Out[0], c.In[0]) },
		accel.Softmax: func(ctx context.Context, c *accel.Call) error { return b.softmax(ctx, v, c.Out[0], c.In[0]) },
		accel.Add:     func(ctx context.Context, c *accel.Call) error { return b.add(ctx, v, c.Out[0], c.In[0], c.In[1]) },
		accel.Clip: func(ctx context.Context, c *accel.Call) error {
			return b.clip(ctx, v, c.Out[0], c.In[0], c.Params.(accel.ClipParams))
		},
		accel.GlobalAvgPool: func(ctx context.Context, c *accel.Call) error {
			return b.globalAvgPool(ctx, v, c.Out[0], c.In[0])
		},
		accel.Unary: func(ctx context.Context, c *accel.Call) error {
			return b.unary(ctx, v, c.Out[0], c.In[0], c.Params.(accel.UnaryParams))
		},
		accel.Binary: func(ctx context.Context, c *accel.Call) error {
			return b.binary(ctx, v, c.Out[0], c.In[0], c.In[1], c.Params.(accel.BinaryParams).Func)
		},
		accel.Transpose: func(ctx context.Context, c *accel.Call) error {
			return b.transpose(ctx, v, c.Out[0], c.In[0], c.Params.(accel.TransposeParams))
		},
		accel.Concat: func(ctx context.Context, c *accel.Call) error {
			return b.concat(ctx, v, c.Out[0], c.In[0], c.In[1], c.Params.(accel.ConcatParams).Axis)
		},
		accel.Slice: func(ctx context.Context, c *accel.Call) error {
			return b.slice(ctx, v, c.Out[0], c.In[0], c.Params.(accel.SliceParams))
		},
		accel.Gather: func(ctx context.Context, c *accel.Call) error {
			return b.gather(ctx, v, c.Out[0], c.In[0], c.In[1], c.Params.(accel.GatherParams).Axis)
		},
		accel.BatchMatMul: func(ctx context.Context, c *accel.Call) error {
			return b.batchMatMul(ctx, v, c.Out[0], c.In[0], c.In[1])
		},
		accel.LayerNorm: func(ctx context.Context, c *accel.Call) error {
			return b.layerNorm(ctx, v, c.Out[0], c.In[0], c.In[1], c.In[2], c.Params.(accel.LayerNormParams))
		},
		accel.MaxPool2D: func(ctx context.Context, c *accel.Call) error {
			return b.maxPool2D(ctx, v, c.Out[0], c.In[0], c.Params.(accel.Pool2DParams))
		},
		accel.TSNEStep: func(ctx context.Context, c *accel.Call) error {
			if p := c.Params.(accel.TSNEParams); p.Theta > 0 {
				// The GPU kernel computes the exact repulsion only.
				return fmt.Errorf("%w: Barnes-Hut (theta %g) has no GPU kernel, only the exact step (theta 0); a CPU backend runs it",
					accel.ErrUnsupported, p.Theta)
			}
			kl, err := b.tsneStep(ctx, v, accel.TSNEStateOf(c), c.Params.(accel.TSNEParams))
			if err == nil && c.WantScalar {
				c.Scalar = kl
			}
			return err
		},
	}
}

// withoutKernels are the operations the GPU does not serve yet: the
// training operations and t-SNE's affinities and quality, whose strict
// kernels must be checked bit for bit
// against ref on a GPU before they ship. A call of one is refused as
// unsupported on the Session's one path, and a guest can run it on a CPU
// backend.
var withoutKernels = []*accel.Op{
	accel.Conv2DBackwardData, accel.Conv2DBackwardFilter, accel.MaxPool2DBackward, accel.ReluBackward,
	accel.ReduceSum, accel.SoftmaxCrossEntropy, accel.SGDMomentum, accel.Adam,
	accel.TSNEAffinities, accel.EmbeddingQuality,
}

// launch1D starts kernel name of variant v over work items.
func (d *device) launch1D(v variant, name string, work int64, block int, a *kernelArgs) error {
	fn, err := d.function(v, name)
	if err != nil {
		return err
	}
	return d.launch(name, fn, gridFor(work, block), uint32(block), 0, a)
}

// matMul computes out = op(a)·op(bm): cuBLAS in the fast variant, the
// contract's tiled kernel in the strict one.
func (b *Backend) matMul(ctx context.Context, v variant, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	m, k, n, _ := accel.MatMulDims(a.Shape(), bm.Shape(), p) // checked by the Session
	if v == fastKernels {
		return b.run(ctx, "matmul", []*accel.Tensor{out}, func(d *device) error {
			h, err := d.cublas()
			if err != nil {
				return err
			}
			return d.libs.blas.sgemmRowMajor(h, m, n, k, ptr(a), ptr(bm), ptr(out), p.TransA, p.TransB)
		})
	}
	return b.run(ctx, "matmul", []*accel.Tensor{out}, func(d *device) error {
		return d.matmulStrict(m, n, k, ptr(a), ptr(bm), ptr(out), p.TransA, p.TransB)
	})
}

// concat copies a then b along axis into out.
func (b *Backend) concat(ctx context.Context, v variant, out, x, y *accel.Tensor, axis int) error {
	xs, ys := x.Shape(), y.Shape()
	inner := int64(1)
	for _, d := range xs[axis+1:] {
		inner *= int64(d)
	}
	na, nb, n := int64(xs[axis])*inner, int64(ys[axis])*inner, int64(out.Len())
	return b.run(ctx, "concat", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "concat", n, blockThreads, args(ptr(x), ptr(y), ptr(out), n, na, nb))
	})
}

// slice copies the strided window p of x into out, one thread an output
// element.
func (b *Backend) slice(ctx context.Context, v variant, out, x *accel.Tensor, p accel.SliceParams) error {
	shape, xs := out.Shape(), x.Shape()
	var dims, steps [accel.MaxRank]int64
	base := int64(0)
	for i, stride := len(xs)-1, int64(1); i >= 0; i-- {
		dims[i], steps[i] = int64(shape[i]), int64(p.Step[i])*stride
		base += int64(p.Start[i]) * stride
		stride *= int64(xs[i])
	}
	n := int64(out.Len())
	return b.run(ctx, "slice", []*accel.Tensor{out}, func(d *device) error {
		vals := []any{ptr(x), ptr(out), n, base, int32(len(shape))}
		for _, a := range dims {
			vals = append(vals, a)
		}
		for _, a := range steps {
			vals = append(vals, a)
		}
		return d.launch1D(v, "slice", n, blockThreads, args(vals...))
	})
}

// gather copies x's blocks along axis at indices into out, one thread an
// output element.
func (b *Backend) gather(ctx context.Context, v variant, out, x, indices *accel.Tensor, axis int) error {
	xs := x.Shape()
	inner := int64(1)
	for _, d := range xs[axis+1:] {
		inner *= int64(d)
	}
	n, m, size := int64(out.Len()), int64(indices.Len()), int64(xs[axis])
	return b.run(ctx, "gather", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "gather", n, blockThreads, args(ptr(x), ptr(indices), ptr(out), n, m, size, inner))
	})
}

// batchMatMul computes each product of a batch_matmul as matMul does, one
// launch (or cuBLAS call) a product, at the operands' offsets.
func (b *Backend) batchMatMul(ctx context.Context, v variant, out, a, bm *accel.Tensor) error {
	_, batches, m, k, n, _ := accel.BatchMatMulDims(a.Shape(), bm.Shape()) // checked by the Session
	at := accel.BatchOffsets(a.Shape(), bm.Shape())
	return b.run(ctx, "batch_matmul", []*accel.Tensor{out}, func(d *device) error {
		for i := range batches {
			ia, ib := at(i)
			pa, pb := ptr(a)+uint64(4*ia), ptr(bm)+uint64(4*ib)
			pc := ptr(out) + uint64(4*i*m*n)
			var err error
			if v == fastKernels {
				var h uintptr
				if h, err = d.cublas(); err == nil {
					err = d.libs.blas.sgemmRowMajor(h, m, n, k, pa, pb, pc, false, false)
				}
			} else {
				err = d.matmulStrict(m, n, k, pa, pb, pc, false, false)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// matmulStrict launches the contract's tiled matmul: matmul_XY, X and Y
// being n or t for each operand's transpose, and the _edge variant, which
// checks bounds, unless the shape fills whole tiles and slices.
func (d *device) matmulStrict(m, n, k int, a, bm, out uint64, transA, transB bool) error {
	name := "matmul_"
	for _, t := range []bool{transA, transB} {
		if t {
			name += "t"
		} else {
			name += "n"
		}
	}
	if m%mmTile != 0 || n%mmTile != 0 || k%mmSlice != 0 {
		name += "_edge"
	}
	fn, err := d.function(strictKernels, name)
	if err != nil {
		return err
	}
	tiles := int64((m+mmTile-1)/mmTile) * int64((n+mmTile-1)/mmTile)
	return d.launch(name, fn, uint32(tiles), 256, 0, args(a, bm, out, int32(m), int32(n), int32(k)))
}

// cublas returns the device's cuBLAS handle, created on first use.
func (d *device) cublas() (uintptr, error) {
	if d.blas != 0 {
		return d.blas, nil
	}
	api := d.libs.blas
	var h uintptr
	if err := api.check("cublasCreate", api.cublasCreate(&h)); err != nil {
		return 0, err
	}
	mode := int32(cublasDefaultMath)
	if d.tf32 {
		mode = cublasTF32TensorMath
	}
	if err := api.check("cublasSetStream", api.cublasSetStream(h, d.stream)); err != nil {
		api.cublasDestroy(h)
		return 0, err
	}
	if err := api.check("cublasSetMathMode", api.cublasSetMathMode(h, mode)); err != nil {
		api.cublasDestroy(h)
		return 0, err
	}
	d.blas = h
	return h, nil
}

// conv2D computes a convolution: cuDNN in the fast variant where it gives
// the contract's value up to rounding, the direct kernel otherwise.
func (b *Backend) conv2D(ctx context.Context, v variant, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	xs, ws, ys := x.Shape(), w.Shape(), out.Shape()
	key := convKey{
		n: xs[0], c: xs[1], h: xs[2], w: xs[3],
		oc: ws[0], kh: ws[2], kw: ws[3], oh: ys[2], ow: ys[3],
		padH: p.PadTop, padW: p.PadLeft,
		strideH: p.StrideH, strideW: p.StrideW, dilH: p.DilationH, dilW: p.DilationW,
		groups: p.Groups,
	}
	// cuDNN takes symmetric padding only, and multiplies padding by zero,
	// which differs from skipping it only for non-finite weights.
	padded := p.PadTop+p.PadBottom+p.PadLeft+p.PadRight > 0
	return b.run(ctx, "conv2d", []*accel.Tensor{out}, func(d *device) error {
		var biasPtr uint64
		if bias != nil {
			biasPtr = ptr(bias)
		}
		useDNN := v == fastKernels && d.libs.dnn != nil &&
			p.PadTop == p.PadBottom && p.PadLeft == p.PadRight &&
			(!padded || w.Buffer().(*buffer).finite.Load())
		if useDNN {
			return d.convDNN(key, ptr(x), ptr(w), biasPtr, ptr(out))
		}
		return d.launch1D(v, "conv2d_direct", int64(out.Len()), blockThreads, args(
			ptr(x), ptr(w), biasPtr, ptr(out),
			int32(key.n), int32(key.c), int32(key.h), int32(key.w), int32(key.oc), int32(key.kh), int32(key.kw),
			int32(key.oh), int32(key.ow), int32(p.StrideH), int32(p.StrideW), int32(p.PadTop), int32(p.PadLeft),
			int32(p.DilationH), int32(p.DilationW), int32(p.Groups)))
	})
}

// convDNN runs a convolution through cuDNN with the shape's pinned plan,
// then adds the bias with the fast add_bias kernel.
func (d *device) convDNN(key convKey, x, w, bias, y uint64) error {
	api := d.libs.dnn
	if d.dnn == 0 {
		var h uintptr
		if err := api.check("cudnnCreate", api.cudnnCreate(&h)); err != nil {
			return err
		}
		if err := api.check("cudnnSetStream", api.cudnnSetStream(h, d.stream)); err != nil {
			api.cudnnDestroy(h)
			return err
		}
		d.dnn = h
	}
	plan := d.plans[key]
	if plan == nil {
		var err error
		if plan, err = api.plan(d.dnn, key, d.tf32); err != nil {
			return err
		}
		d.plans[key] = plan
	}
	if plan.workspace > uint64(d.workspace.class) {
		if d.workspace.ptr != 0 {
			d.pool.release(d.libs.drv, d.workspace)
			d.workspace = devMem{}
		}
		ws, err := d.pool.alloc(d.libs.drv, int64(plan.workspace))
		if err != nil {
			return err
		}
		d.workspace = ws
	}
	alpha, beta := float32(1), float32(0)
	if err := api.check("cudnnConvolutionForward", api.cudnnConvolutionForward(d.dnn, &alpha, plan.x, x, plan.w, w,
		plan.conv, plan.algo, d.workspace.ptr, plan.workspace, &beta, plan.y, y)); err != nil {
		return err
	}
	if bias == 0 {
		return nil
	}
	n := int64(key.n) * int64(key.oc) * int64(key.oh) * int64(key.ow)
	return d.launch1D(fastKernels, "add_bias", n, blockThreads,
		args(y, bias, y, n, int32(key.oc), int64(key.oh)*int64(key.ow)))
}

// addBias computes out = x + bias broadcast along axis.
func (b *Backend) addBias(ctx context.Context, v variant, out, x, bias *accel.Tensor, axis int) error {
	shape := x.Shape()
	inner := int64(1)
	for _, d := range shape[axis+1:] {
		inner *= int64(d)
	}
	n := int64(x.Len())
	return b.run(ctx, "add_bias", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "add_bias", n, blockThreads, args(ptr(x), ptr(bias), ptr(out), n, int32(shape[axis]), inner))
	})
}

// relu computes out = max(x, +0), NaN preserved.
func (b *Backend) relu(ctx context.Context, v variant, out, x *accel.Tensor) error {
	n := int64(x.Len())
	return b.run(ctx, "relu", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "relu", n, blockThreads, args(ptr(x), ptr(out), n))
	})
}

// add computes out = x + y elementwise, for tensors of one shape.
func (b *Backend) add(ctx context.Context, v variant, out, x, y *accel.Tensor) error {
	n := int64(out.Len())
	return b.run(ctx, "add", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "add", n, blockThreads, args(ptr(x), ptr(y), ptr(out), n))
	})
}

// clip computes out = min(max(x, lo), hi), NaN preserved.
func (b *Backend) clip(ctx context.Context, v variant, out, x *accel.Tensor, p accel.ClipParams) error {
	n := int64(x.Len())
	return b.run(ctx, "clip", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "clip", n, blockThreads, args(ptr(x), ptr(out), n, p.Min, p.Max))
	})
}

// unary computes out = f(x) elementwise for unary's functions.
func (b *Backend) unary(ctx context.Context, v variant, out, x *accel.Tensor, p accel.UnaryParams) error {
	n := int64(x.Len())
	return b.run(ctx, "unary", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "unary", n, blockThreads, args(ptr(x), ptr(out), n, int32(p.Func), p.Alpha, p.Beta))
	})
}

// binary computes out = a ∘ b with NumPy's broadcasting: the output's
// dims and each operand's steps go to the kernel as eight values each.
func (b *Backend) binary(ctx context.Context, v variant, out, x, y *accel.Tensor, f accel.BinaryFunc) error {
	shape := out.Shape()
	n := int64(out.Len())
	var dims []any
	for _, s := range [][]int{shape, accel.BroadcastStrides(x.Shape(), shape), accel.BroadcastStrides(y.Shape(), shape)} {
		for i := range accel.MaxRank {
			var d int64
			if i < len(s) {
				d = int64(s[i])
			}
			dims = append(dims, d)
		}
	}
	return b.run(ctx, "binary", []*accel.Tensor{out}, func(d *device) error {
		vals := append([]any{ptr(x), ptr(y), ptr(out), n, int32(f), int32(len(shape))}, dims...)
		return d.launch1D(v, "binary", n, blockThreads, args(vals...))
	})
}

// transpose copies x into out with its axes permuted: the output's dims
// and the input's step along each output axis go to the kernel as eight
// values each.
func (b *Backend) transpose(ctx context.Context, v variant, out, x *accel.Tensor, p accel.TransposeParams) error {
	shape, xs := out.Shape(), x.Shape()
	axes := p.Axes(len(xs))
	inStride := make([]int, len(xs))
	for i, step := len(xs)-1, 1; i >= 0; i-- {
		inStride[i] = step
		step *= xs[i]
	}
	var dims []any
	for _, val := range []func(i int) int{func(i int) int { return shape[i] }, func(i int) int { return inStride[axes[i]] }} {
		for i := range accel.MaxRank {
			var d int64
			if i < len(shape) {
				d = int64(val(i))
			}
			dims = append(dims, d)
		}
	}
	n := int64(out.Len())
	return b.run(ctx, "transpose", []*accel.Tensor{out}, func(d *device) error {
		vals := append([]any{ptr(x), ptr(out), n, int32(len(shape))}, dims...)
		return d.launch1D(v, "transpose", n, blockThreads, args(vals...))
	})
}

// layerNorm normalises each row of x from p.Axis on, one thread a row.
func (b *Backend) layerNorm(ctx context.Context, v variant, out, x, scale, bias *accel.Tensor, p accel.LayerNormParams) error {
	n := int64(scale.Len())
	rows := int64(x.Len()) / n
	return b.run(ctx, "layer_norm", []*accel.Tensor{out}, func(d *device) error {
		biasPtr := uint64(0)
		if bias != nil {
			biasPtr = ptr(bias)
		}
		return d.launch1D(v, "layer_norm", rows, blockThreads, args(ptr(x), ptr(scale), biasPtr, ptr(out), rows, n, float32(n), p.Epsilon))
	})
}

// globalAvgPool computes the mean of each H×W plane of x, one thread a
// plane.
func (b *Backend) globalAvgPool(ctx context.Context, v variant, out, x *accel.Tensor) error {
	s := x.Shape()
	planes, hw := int64(s[0])*int64(s[1]), int64(s[2])*int64(s[3])
	return b.run(ctx, "global_avgpool", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "global_avgpool", planes, blockThreads, args(ptr(x), ptr(out), planes, hw, float32(hw)))
	})
}

// maxPool2D computes the window maxima of x.
func (b *Backend) maxPool2D(ctx context.Context, v variant, out, x *accel.Tensor, p accel.Pool2DParams) error {
	xs, ys := x.Shape(), out.Shape()
	return b.run(ctx, "maxpool2d", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "maxpool2d", int64(out.Len()), blockThreads, args(ptr(x), ptr(out),
			int32(xs[0]), int32(xs[1]), int32(xs[2]), int32(xs[3]), int32(ys[2]), int32(ys[3]),
			int32(p.KernelH), int32(p.KernelW), int32(p.StrideH), int32(p.StrideW), int32(p.PadTop), int32(p.PadLeft)))
	})
}

// softmax normalises x along its last axis.
func (b *Backend) softmax(ctx context.Context, v variant, out, x *accel.Tensor) error {
	shape := x.Shape()
	L := shape[len(shape)-1]
	rows := int64(x.Len() / L)
	return b.run(ctx, "softmax", []*accel.Tensor{out}, func(d *device) error {
		return d.launch1D(v, "softmax_rows", rows, blockThreads, args(ptr(x), ptr(out), rows, int32(L)))
	})
}

// Threads per block of the t-SNE repulsion (its shared-memory tile) and of
// the tree sum (one block).
const (
	tsneTile       = 128
	treesumThreads = 1024
)

// tsneStep runs one t-SNE iteration on s in place and returns the KL
// divergence when p asks for it.
func (b *Backend) tsneStep(ctx context.Context, v variant, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	n := s.N()
	// Scratch, in one allocation: z, rx, ry, the new Y, the KL terms, the
	// tree sum's ping-pong halves, then Z, the two column sums and the KL.
	off := func(floats int) int { return (floats + 63) / 64 * 64 } // 256-byte aligned pieces
	var (
		zOff    = 0
		rxOff   = zOff + off(n)
		ryOff   = rxOff + off(n)
		newYOff = ryOff + off(n)
		klOff   = newYOff + off(2*n)
		treeOff = klOff + off(n)
		outOff  = treeOff + off(2*((n+1)/2)+2)
		total   = outOff + 4
	)
	var kl float32
	err := b.run(ctx, "tsne_step", []*accel.Tensor{s.Y, s.Update, s.Gains}, func(d *device) error {
		scratch, err := d.pool.alloc(d.libs.drv, int64(total)*4)
		if err != nil {
			return err
		}
		defer d.pool.release(d.libs.drv, scratch)
		at := func(floats int) uint64 { return scratch.ptr + uint64(floats)*4 }
		z, rx, ry, newY, klTerms, tree := at(zOff), at(rxOff), at(ryOff), at(newYOff), at(klOff), at(treeOff)
		zSum, colSums, klSum := at(outOff), at(outOff+1), at(outOff+3)

		fn, err := d.function(v, "tsne_repulse")
		if err != nil {
			return err
		}
		if err := d.launch("tsne_repulse", fn, uint32((n+tsneTile-1)/tsneTile), tsneTile, 0, args(ptr(s.Y), z, rx, ry, int32(n))); err != nil {
			return err
		}
		treesum := func(in uint64, stride int64, out uint64) error {
			fn, err := d.function(v, "treesum")
			if err != nil {
				return err
			}
			return d.launch("treesum", fn, 1, treesumThreads, 0, args(in, stride, int32(n), tree, out))
		}
		if err := treesum(z, 1, zSum); err != nil {
			return err
		}
		var klArg uint64
		if p.ComputeKL {
			klArg = klTerms
		}
		if err := d.launch1D(v, "tsne_update", int64(n), blockThreads, args(
			ptr(s.RowPtr), ptr(s.Cols), ptr(s.Vals), ptr(s.Y), ptr(s.Update), ptr(s.Gains),
			rx, ry, zSum, newY, klArg, int32(n),
			p.LearningRate, p.Momentum, p.Exaggeration, p.MinGain)); err != nil {
			return err
		}
		if err := treesum(newY, 2, colSums); err != nil {
			return err
		}
		if err := treesum(newY+4, 2, colSums+4); err != nil {
			return err
		}
		if err := d.launch1D(v, "tsne_recentre", int64(n), blockThreads, args(newY, colSums, ptr(s.Y), int32(n))); err != nil {
			return err
		}
		if !p.ComputeKL {
			return d.sync() // before the deferred release hands the scratch out again
		}
		if err := treesum(klTerms, 1, klSum); err != nil {
			return err
		}
		var word [4]byte
		drv := d.libs.drv
		if err := drv.check("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&word[0]), klSum, 4, d.stream)); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		kl = strictmath.Canon(math.Float32frombits(binary.LittleEndian.Uint32(word[:])))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return kl, nil
}
