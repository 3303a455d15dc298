package strictcpu

import (
	"context"
	"math"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// elemChunk is how many elements of an elementwise operation make one work
// item.
const elemChunk = 1 << 16

// AddBias computes out[…, i, …] = canon(x[…, i, …] + bias[i]) along axis.
func (b *Kernels) AddBias(ctx context.Context, out, x, bias *accel.Tensor, axis int) error {
	shape := x.Shape()
	inner := 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	dim := shape[axis]
	X, B, Y := f32(x), f32(bias), f32(out)
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(X))
		i := lo
		for i < hi {
			// A run of elements sharing one bias value.
			end := min(hi, (i/inner+1)*inner)
			bv := B[i/inner%dim]
			xs, ys := X[i:end], Y[i:end]
			ys = ys[:len(xs)]
			for j, v := range xs {
				ys[j] = strictmath.Canon(v + bv)
			}
			i = end
		}
	})
}

// Add computes out = canon(a + b) elementwise.
func (b *Kernels) Add(ctx context.Context, out, x, y *accel.Tensor) error {
	X, Y, Z := f32(x), f32(y), f32(out)
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(X))
		xs, ys, zs := X[lo:hi], Y[lo:hi], Z[lo:hi]
		ys, zs = ys[:len(xs)], zs[:len(xs)]
		for i, v := range xs {
			zs[i] = strictmath.Canon(v + ys[i])
		}
	})
}

// Relu computes out = canonical NaN for NaN, x for x > 0, and +0 otherwise.
// The SIMD kernel levels take eight elements at a time in AVX2
// (elementwise_amd64.s) and leave the last few to the portable loop.
func (b *Kernels) Relu(ctx context.Context, out, x *accel.Tensor) error {
	X, Y := f32(x), f32(out)
	simd := !b.Portable()
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(X))
		xs, ys := X[lo:hi], Y[lo:hi]
		ys = ys[:len(xs)]
		if simd {
			n := reluSIMD(ys, xs)
			xs, ys = xs[n:], ys[n:]
		}
		relu(ys, xs)
	})
}

// relu is Relu's portable loop, and the SIMD loop's tail: ys[i] = relu(xs[i]).
func relu(ys, xs []float32) {
	ys = ys[:len(xs)]
	for i, v := range xs {
		// Go compiles this test to a branch, which mispredicts on
		// random signs; the AVX2 path (reluSIMD) has none.
		var b uint32
		if v > 0 {
			b = math.Float32bits(v)
		}
		if v != v {
			b = strictmath.CanonicalNaN
		}
		ys[i] = math.Float32frombits(b)
	}
}

// maxRule is the contract's running maximum: m keeps its value if it is NaN,
// and otherwise takes v if v is NaN or greater. Of equal values the first
// stays.
func maxRule(m, v float32) float32 {
	if m == m && (v != v || v > m) {
		return v
	}
	return m
}

// MaxPool2D scans each window row-major over its positions inside the input.
// Work items are rectangles of output rows and columns holding about
// elemChunk window positions, so that huge windows are interrupted promptly.
func (b *Kernels) MaxPool2D(ctx context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	xs, ys := x.Shape(), out.Shape()
	H, W := xs[2], xs[3]
	OH, OW := ys[2], ys[3]
	X, Y := f32(x), f32(out)
	planes := xs[0] * xs[1]
	window := p.KernelH * p.KernelW // below 2^63: each side is within the padded input
	colStep, bandRows := OW, 1
	if window > elemChunk/OW {
		colStep = max(1, elemChunk/window)
	} else {
		bandRows = max(1, min(OH, elemChunk/(OW*window)))
	}
	colChunks := (OW + colStep - 1) / colStep
	bands := (OH + bandRows - 1) / bandRows
	return b.forEach(ctx, planes*bands*colChunks, func(item int) {
		pl, rect := item/(bands*colChunks), item%(bands*colChunks)
		r0, r1 := rect/colChunks*bandRows, min((rect/colChunks+1)*bandRows, OH)
		j0, j1 := rect%colChunks*colStep, min((rect%colChunks+1)*colStep, OW)
		xp := X[pl*H*W : (pl+1)*H*W]
		yp := Y[pl*OH*OW : (pl+1)*OH*OW]
		for oh := r0; oh < r1; oh++ {
			ih0 := oh*p.StrideH - p.PadTop
			ihLo, ihHi := max(ih0, 0), min(ih0+p.KernelH, H)
			for ow := j0; ow < j1; ow++ {
				iw0 := ow*p.StrideW - p.PadLeft
				iwLo, iwHi := max(iw0, 0), min(iw0+p.KernelW, W)
				m := xp[ihLo*W+iwLo]
				first := true
				for ih := ihLo; ih < ihHi; ih++ {
					for _, v := range xp[ih*W+iwLo : ih*W+iwHi] {
						if first {
							first = false
							continue
						}
						m = maxRule(m, v)
					}
				}
				yp[oh*OW+ow] = strictmath.Canon(m)
			}
		}
	})
}

// Softmax normalises each row of the last axis: m is the row's maximum under
// the maxpool rule, e[i] = exp(x[i] - m), s is their sum from the left, and
// y[i] = canon(e[i] / s). A long row is worked through in segments of
// elemChunk elements, in the same order, so that a deadline interrupts it.
func (b *Kernels) Softmax(ctx context.Context, out, x *accel.Tensor) error {
	shape := x.Shape()
	L := shape[len(shape)-1]
	X, Y := f32(x), f32(out)
	rows := len(X) / L
	count, step := chunks(rows, elemChunk/L)
	return b.forEach(ctx, count, func(c int) {
		for r := c * step; r < min((c+1)*step, rows); r++ {
			xs, ys := X[r*L:(r+1)*L], Y[r*L:(r+1)*L]
			m := xs[0]
			for lo := 1; lo < L; lo += elemChunk {
				if lo > 1 && ctx.Err() != nil {
					return // forEach reports the interruption
				}
				for _, v := range xs[lo:min(lo+elemChunk, L)] {
					m = maxRule(m, v)
				}
			}
			var s float32
			for lo := 0; lo < L; lo += elemChunk {
				if lo > 0 && ctx.Err() != nil {
					return
				}
				hi := min(lo+elemChunk, L)
				for i, v := range xs[lo:hi] {
					e := strictmath.Exp(v - m)
					ys[lo+i] = e
					s = s + e
				}
			}
			for lo := 0; lo < L; lo += elemChunk {
				if lo > 0 && ctx.Err() != nil {
					return
				}
				seg := ys[lo:min(lo+elemChunk, L)]
				for i, e := range seg {
					seg[i] = strictmath.Canon(e / s)
				}
			}
		}
	})
}

// Clip computes out = canon(min(max(x, lo), hi)) elementwise, each bound
// taken only where it compares beyond x: t = lo if x < lo else x, then
// y = hi if t > hi else t. A NaN x fails both comparisons and gives the
// canonical NaN; a -0 or +0 x equal to a zero bound keeps its own sign.
// The SIMD kernel levels take eight elements at a time in AVX2
// (elementwise_amd64.s) and leave the last few to the portable loop.
func (b *Kernels) Clip(ctx context.Context, out, x *accel.Tensor, p accel.ClipParams) error {
	X, Y := f32(x), f32(out)
	lo, hi := p.Min, p.Max
	simd := !b.Portable()
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		start, end := c*step, min((c+1)*step, len(X))
		xs, ys := X[start:end], Y[start:end]
		ys = ys[:len(xs)]
		if simd {
			n := clipSIMD(ys, xs, lo, hi)
			xs, ys = xs[n:], ys[n:]
		}
		clip(ys, xs, lo, hi)
	})
}

// clip is Clip's portable loop, and the SIMD loop's tail: ys[i] =
// clip(xs[i], lo, hi).
func clip(ys, xs []float32, lo, hi float32) {
	ys = ys[:len(xs)]
	// The selections are on the values' bits, which the compiler makes
	// conditional moves (about 1.7 ns an element here, against 6 for
	// relu's branch); the AVX2 path (clipSIMD) is faster still.
	lb, hb := math.Float32bits(lo), math.Float32bits(hi)
	for i, v := range xs {
		b := math.Float32bits(v)
		if v < lo {
			b = lb
		}
		if math.Float32frombits(b) > hi {
			b = hb
		}
		if v != v {
			b = strictmath.CanonicalNaN
		}
		ys[i] = math.Float32frombits(b)
	}
}

// GlobalAvgPool computes each plane's mean of x [N,C,H,W] into out
// [N,C,1,1]: canon(blocksum(plane, row-major) / float32(H·W)), one division
// and no reciprocal. The sums are reduce_sum's over axes 2 and 3, which
// gives the same canonical blocksums on every one of its paths.
func (b *Kernels) GlobalAvgPool(ctx context.Context, out, x *accel.Tensor) error {
	s := x.Shape()
	if err := b.ReduceSum(ctx, out, x, 1<<2|1<<3); err != nil {
		return err
	}
	d := float32(s[2] * s[3])
	Y := f32(out)
	count, step := chunks(len(Y), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		ys := Y[c*step : min((c+1)*step, len(Y))]
		for i, v := range ys {
			ys[i] = strictmath.Canon(v / d)
		}
	})
}

// Unary computes out = f(x) elementwise for unary's functions, in the
// contract's operations, every NaN canonical.
func (b *Kernels) Unary(ctx context.Context, out, x *accel.Tensor, p accel.UnaryParams) error {
	X, Y := f32(x), f32(out)
	f := UnaryElement(p)
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		start, end := c*step, min((c+1)*step, len(X))
		xs, ys := X[start:end], Y[start:end]
		ys = ys[:len(xs)]
		for i, v := range xs {
			ys[i] = f(v)
		}
		strictmath.CanonSlice(ys)
	})
}

// UnaryElement is unary's function of one element, before NaNs are made
// canonical.
func UnaryElement(p accel.UnaryParams) func(float32) float32 {
	switch p.Func {
	case accel.UnaryAbs:
		return func(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
	case accel.UnaryNeg:
		return func(v float32) float32 { return math.Float32frombits(math.Float32bits(v) ^ (1 << 31)) }
	case accel.UnarySqrt:
		// The square root in float64 rounds to the float32 one correctly:
		// 53 bits are more than 2·24 + 2.
		return func(v float32) float32 { return float32(math.Sqrt(float64(v))) }
	case accel.UnaryReciprocal:
		return func(v float32) float32 { return 1 / v }
	case accel.UnaryLeakyRelu:
		alpha := p.Alpha
		return func(v float32) float32 {
			if v >= 0 {
				return v
			}
			return alpha * v
		}
	case accel.UnaryHardSigmoid:
		return func(v float32) float32 { return hardSigmoid(v, p.Alpha, p.Beta) }
	case accel.UnaryHardSwish:
		return func(v float32) float32 { return v * hardSigmoid(v, accel.HardSwishAlpha, 0.5) }
	case accel.UnaryExp:
		return strictmath.Exp
	case accel.UnaryLog:
		return strictmath.Log
	case accel.UnaryTanh:
		return strictmath.Tanh
	case accel.UnarySigmoid:
		return strictmath.Sigmoid
	case accel.UnaryErf:
		return strictmath.Erf
	}
	panic("strictcpu: unary function " + p.Func.String())
}

// hardSigmoid is t = alpha·x, then t + beta, each rounded; +0 where that is
// at most 0 (−0 included), 1 where it is above 1, NaN kept.
func hardSigmoid(v, alpha, beta float32) float32 {
	t := float32(alpha*v) + beta
	switch {
	case t > 1:
		return 1
	case t > 0 || t != t:
		return t
	}
	return 0
}

// Binary computes out = canon(a ∘ b) with NumPy's broadcasting, one IEEE
// operation per element. Work items are ranges of the output in row-major
// order; along the last axis each operand steps by 1, or by 0 where it
// repeats.
func (b *Kernels) Binary(ctx context.Context, out, x, y *accel.Tensor, f accel.BinaryFunc) error {
	shape := out.Shape()
	sa, sb := accel.BroadcastStrides(x.Shape(), shape), accel.BroadcastStrides(y.Shape(), shape)
	last := len(shape) - 1
	inner, stepA, stepB := shape[last], sa[last], sb[last]
	A, B, Y := f32(x), f32(y), f32(out)
	apply := binaryRun(f)
	count, step := chunks(len(Y), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(Y))
		for i := lo; i < hi; {
			row, col := i/inner, i%inner
			ia, ib := col*stepA, col*stepB
			for d, r := last-1, row; d >= 0; d-- {
				k := r % shape[d]
				r /= shape[d]
				ia += k * sa[d]
				ib += k * sb[d]
			}
			end := min(hi, (row+1)*inner)
			apply(Y[i:end], A, ia, stepA, B, ib, stepB)
			i = end
		}
		strictmath.CanonSlice(Y[lo:hi])
	})
}

// binaryRun is a run of binary's elements along the last axis: y[j] =
// a[ia + j·sa] ∘ b[ib + j·sb].
func binaryRun(f accel.BinaryFunc) func(y, a []float32, ia, sa int, b []float32, ib, sb int) {
	switch f {
	case accel.BinaryAdd:
		return func(y, a []float32, ia, sa int, b []float32, ib, sb int) {
			for j := range y {
				y[j] = a[ia+j*sa] + b[ib+j*sb]
			}
		}
	case accel.BinarySub:
		return func(y, a []float32, ia, sa int, b []float32, ib, sb int) {
			for j := range y {
				y[j] = a[ia+j*sa] - b[ib+j*sb]
			}
		}
	case accel.BinaryMul:
		return func(y, a []float32, ia, sa int, b []float32, ib, sb int) {
			for j := range y {
				y[j] = a[ia+j*sa] * b[ib+j*sb]
			}
		}
	case accel.BinaryDiv:
		return func(y, a []float32, ia, sa int, b []float32, ib, sb int) {
			for j := range y {
				y[j] = a[ia+j*sa] / b[ib+j*sb]
			}
		}
	}
	panic("strictcpu: " + f.String())
}

// Transpose copies x into out with its axes permuted. Work items are
// ranges of the output in row-major order; along the output's last axis
// the source steps by the stride of the input axis it is.
func (b *Kernels) Transpose(ctx context.Context, out, x *accel.Tensor, p accel.TransposeParams) error {
	shape, xs := out.Shape(), x.Shape()
	axes := p.Axes(len(xs))
	stride := make([]int, len(xs)) // of the input, along each output axis
	for i, step := len(xs)-1, 1; i >= 0; i-- {
		for o, a := range axes {
			if a == i {
				stride[o] = step
			}
		}
		step *= xs[i]
	}
	last := len(shape) - 1
	inner, step := shape[last], stride[last]
	X, Y := f32(x), f32(out)
	count, chunk := chunks(len(Y), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*chunk, min((c+1)*chunk, len(Y))
		for i := lo; i < hi; {
			row, col := i/inner, i%inner
			src := col * step
			for d, r := last-1, row; d >= 0; d-- {
				src += r % shape[d] * stride[d]
				r /= shape[d]
			}
			end := min(hi, (row+1)*inner)
			for j := range Y[i:end] {
				Y[i+j] = X[src+j*step]
			}
			i = end
		}
		strictmath.CanonSlice(Y[lo:hi])
	})
}

// LayerNorm normalises each row of x (its elements from p.Axis on) as the
// contract writes it: mean = blocksum(row) / n; d = x − mean; var =
// blocksum(d·d) / n; inv = 1 / sqrt(var + ε); y = (d·inv)·scale + bias.
// The squares go through out's row, which the results then overwrite, so
// the kernel needs no memory of its own for rows up to BlockLen; longer
// ones keep their runs' sums.
func (b *Kernels) LayerNorm(ctx context.Context, out, x, scale, bias *accel.Tensor, p accel.LayerNormParams) error {
	X, Y, S := f32(x), f32(out), f32(scale)
	var B []float32
	if bias != nil {
		B = f32(bias)
	}
	n := len(S)
	fn := float32(n)
	rows := len(X) / n
	count, step := chunks(rows, max(1, elemChunk/n))
	return b.forEach(ctx, count, func(c int) {
		for r := c * step; r < min((c+1)*step, rows); r++ {
			xs, ys := X[r*n:(r+1)*n], Y[r*n:(r+1)*n]
			mean := strictmath.BlockSum(xs) / fn
			for j, v := range xs {
				d := v - mean
				ys[j] = float32(d * d)
			}
			inv := 1 / float32(math.Sqrt(float64(strictmath.BlockSum(ys)/fn+p.Epsilon)))
			for j, v := range xs {
				// Each conversion rounds: no product fuses into the sum.
				t := float32(float32((v-mean)*inv) * S[j])
				if B != nil {
					t += B[j]
				}
				ys[j] = t
			}
			strictmath.CanonSlice(ys)
		}
	})
}
