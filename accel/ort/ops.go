package ort

import (
	"context"
	"fmt"
	"math"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/hostmem"
	"github.com/accelnode/accelnode/models/onnx"
)

// graph returns the encoder of the graph build makes; it runs only when a
// session is first created, not on every call.
func graph(build func() *onnx.Model) func() []byte {
	return func() []byte { return onnx.Marshal(build()) }
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (b *Backend) MatMul(ctx context.Context, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	key := fmt.Sprintf("gemm ta=%d tb=%d", flag(p.TransA), flag(p.TransB))
	s, err := b.session(key, graph(func() *onnx.Model { return onnx.MatMulGraph(p.TransA, p.TransB) }), []string{"A", "B"}, []string{"Y"})
	if err != nil {
		return err
	}
	return run(ctx, "matmul", s, []value{tensorValue(a), tensorValue(bm)}, []value{tensorValue(out)})
}

func (b *Backend) Conv2D(ctx context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	// ONNX Runtime multiplies padding by zero, which differs from skipping
	// it only where a weight is infinite or NaN: such calls take the
	// reference kernel.
	if p.PadTop+p.PadLeft+p.PadBottom+p.PadRight > 0 && !allFinite(hostmem.F32(w)) {
		return b.exact.Conv2D(ctx, out, x, w, bias, p)
	}
	attrs := onnx.ConvAttrs{
		StrideH: p.StrideH, StrideW: p.StrideW,
		PadTop: p.PadTop, PadLeft: p.PadLeft, PadBottom: p.PadBottom, PadRight: p.PadRight,
		DilationH: p.DilationH, DilationW: p.DilationW, Groups: p.Groups,
	}
	key := fmt.Sprintf("conv %+v bias=%d", attrs, flag(bias != nil))
	inputs, values := []string{"X", "W"}, []value{tensorValue(x), tensorValue(w)}
	if bias != nil {
		inputs, values = append(inputs, "B"), append(values, tensorValue(bias))
	}
	s, err := b.session(key, graph(func() *onnx.Model { return onnx.ConvGraph(attrs, bias != nil) }), inputs, []string{"Y"})
	if err != nil {
		return err
	}
	return run(ctx, "conv2d", s, values, []value{tensorValue(out)})
}

func (b *Backend) AddBias(ctx context.Context, out, x, bias *accel.Tensor, axis int) error {
	s, err := b.session("add", graph(onnx.AddGraph), []string{"X", "B"}, []string{"Y"})
	if err != nil {
		return err
	}
	// The bias as [dim, 1, …, 1], which broadcasts along axis.
	shape := x.Shape()
	bshape := make([]int, len(shape)-axis)
	for i := range bshape {
		bshape[i] = 1
	}
	bshape[0] = shape[axis]
	bv := value{f32: hostmem.F32(bias), shape: bshape}
	return run(ctx, "add_bias", s, []value{tensorValue(x), bv}, []value{tensorValue(out)})
}

func (b *Backend) Relu(ctx context.Context, out, x *accel.Tensor) error {
	s, err := b.session("relu", graph(onnx.ReluGraph), []string{"X"}, []string{"Y"})
	if err != nil {
		return err
	}
	return run(ctx, "relu", s, []value{tensorValue(x)}, []value{tensorValue(out)})
}

func (b *Backend) MaxPool2D(ctx context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	// ONNX Runtime's MaxPool drops NaN and starts each window from the
	// largest negative float, so a window of -Inf gives -MaxFloat32: inputs
	// holding either take the reference kernel.
	if hasNaNOrNegInf(hostmem.F32(x)) {
		return b.exact.MaxPool2D(ctx, out, x, p)
	}
	attrs := onnx.PoolAttrs{
		KernelH: p.KernelH, KernelW: p.KernelW, StrideH: p.StrideH, StrideW: p.StrideW,
		PadTop: p.PadTop, PadLeft: p.PadLeft, PadBottom: p.PadBottom, PadRight: p.PadRight,
	}
	s, err := b.session(fmt.Sprintf("maxpool %+v", attrs), graph(func() *onnx.Model { return onnx.MaxPoolGraph(attrs) }), []string{"X"}, []string{"Y"})
	if err != nil {
		return err
	}
	return run(ctx, "maxpool2d", s, []value{tensorValue(x)}, []value{tensorValue(out)})
}

func (b *Backend) Softmax(ctx context.Context, out, x *accel.Tensor) error {
	s, err := b.session("softmax", graph(onnx.SoftmaxGraph), []string{"X"}, []string{"Y"})
	if err != nil {
		return err
	}
	return run(ctx, "softmax", s, []value{tensorValue(x)}, []value{tensorValue(out)})
}

// tsnePairs bounds the pairs of one repulsion block, so that the block's
// intermediate matrices stay small (about 16 MiB each) for any N.
const tsnePairs = 1 << 22

// TSNEStep runs the exact-gradient iteration as three graphs: the
// repulsion over blocks of rows against all points (memory O(block·N), never
// N×N), the attraction and KL over P's stored entries, and the gains,
// update and re-centring. New values are written to the state only after
// everything has been read.
func (b *Backend) TSNEStep(ctx context.Context, st accel.TSNEState, p accel.TSNEParams) (float32, error) {
	repulsion, err := b.session("tsne repulsion", graph(onnx.TSNERepulsionGraph), []string{"Yb", "Y"}, []string{"z", "rep"})
	if err != nil {
		return 0, err
	}
	attraction, err := b.session("tsne attraction", graph(onnx.TSNEAttractionGraph),
		[]string{"rows", "cols", "vals", "Y", "Z"}, []string{"attr", "kl"})
	if err != nil {
		return 0, err
	}
	update, err := b.session("tsne update", graph(onnx.TSNEUpdateGraph),
		[]string{"Y", "U", "G", "attr", "rep", "Z", "eta", "alpha", "exag", "min_gain"}, []string{"Y_new", "U_new", "G_new"})
	if err != nil {
		return 0, err
	}

	n := st.N()
	Y := hostmem.F32(st.Y)[:2*n]
	z := make([]float32, n)
	rep := make([]float32, 2*n)
	rows := max(1, min(n, tsnePairs/n))
	for r0 := 0; r0 < n; r0 += rows {
		r1 := min(n, r0+rows)
		err := run(ctx, "tsne_step", repulsion,
			[]value{{f32: Y[2*r0 : 2*r1], shape: []int{r1 - r0, 2}}, {f32: Y, shape: []int{n, 2}}},
			[]value{{f32: z[r0:r1], shape: []int{r1 - r0}}, {f32: rep[2*r0 : 2*r1], shape: []int{r1 - r0, 2}}})
		if err != nil {
			return 0, err
		}
	}
	var sum float64
	for _, v := range z {
		sum += float64(v)
	}
	Z := float32(sum)

	// P's row of each stored entry, and its columns, as ONNX's int64 indices.
	rowPtr, cols := hostmem.I32(st.RowPtr), hostmem.I32(st.Cols)
	nnz := len(cols)
	rowIdx, colIdx := make([]int64, nnz), make([]int64, nnz)
	for i := range n {
		for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
			rowIdx[e] = int64(i)
		}
	}
	for e, c := range cols {
		colIdx[e] = int64(c)
	}
	attr := make([]float32, 2*n)
	kl := make([]float32, 1)
	err = run(ctx, "tsne_step", attraction,
		[]value{{i64: rowIdx, shape: []int{nnz}}, {i64: colIdx, shape: []int{nnz}}, tensorValue(st.Vals), {f32: Y, shape: []int{n, 2}}, scalarValue(Z)},
		[]value{{f32: attr, shape: []int{n, 2}}, {f32: kl, scalar: true}})
	if err != nil {
		return 0, err
	}

	newY, newU, newG := make([]float32, 2*n), make([]float32, 2*n), make([]float32, 2*n)
	pair := func(v []float32) value { return value{f32: v, shape: []int{n, 2}} }
	err = run(ctx, "tsne_step", update,
		[]value{pair(Y), tensorValue(st.Update), tensorValue(st.Gains), pair(attr), pair(rep),
			scalarValue(Z), scalarValue(p.LearningRate), scalarValue(p.Momentum), scalarValue(p.Exaggeration), scalarValue(p.MinGain)},
		[]value{pair(newY), pair(newU), pair(newG)})
	if err != nil {
		return 0, err
	}
	copy(Y, newY)
	copy(hostmem.F32(st.Update), newU)
	copy(hostmem.F32(st.Gains), newG)
	if !p.ComputeKL {
		return 0, nil
	}
	return kl[0], nil
}

func allFinite(v []float32) bool {
	for _, x := range v {
		if math.IsInf(float64(x), 0) || x != x {
			return false
		}
	}
	return true
}

func hasNaNOrNegInf(v []float32) bool {
	for _, x := range v {
		if x != x || math.IsInf(float64(x), -1) {
			return true
		}
	}
	return false
}
