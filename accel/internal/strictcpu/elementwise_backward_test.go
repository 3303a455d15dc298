package strictcpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// backwardSpecials are the values the gradients' tests sprinkle: NaNs with
// payloads, infinities, signed zeros, subnormals and values whose sums
// overflow.
var backwardSpecials = []float32{nanPay, inf, -inf, negZ, 0, math.Float32frombits(3), -math.Float32frombits(0x7fffff), math.MaxFloat32, -math.MaxFloat32}

// withSpecials replaces about a fraction p of v by special values.
func withSpecials(r *rand.Rand, v []float32, p float64) []float32 {
	for i := range v {
		if r.Float64() < p {
			v[i] = backwardSpecials[r.IntN(len(backwardSpecials))]
		}
	}
	return v
}

// eachBackwardKernel runs fn on a session of every kernel level this CPU
// runs, on one thread and on three.
func eachBackwardKernel(t *testing.T, fn func(t *testing.T, s *accel.Session)) {
	for _, kern := range kernelLevels {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(t *testing.T) {
				fn(t, newSessionKernels(t, threads, kern))
			})
		}
	}
}

func TestReluBackwardHand(t *testing.T) {
	sub := math.Float32frombits(1)
	x := []float32{1, 1, 1, 2, 0, negZ, -1, nanPay, inf, sub, -inf, 3}
	dy := []float32{2.5, negZ, nanPay, inf, 7, 7, 7, 1, -3, -sub, nanPay, 0}
	want := []float32{2.5, negZ, strictmath.NaN(), inf, 0, 0, 0, strictmath.NaN(), -3, -sub, 0, 0}
	eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
		out, err := s.ReluBackward(bg, tensorF32(t, s, []int{3, 4}, x), tensorF32(t, s, []int{3, 4}, dy))
		if err != nil {
			t.Fatalf("relu_backward: %v", err)
		}
		checkBits(t, "relu_backward", readF32(t, s, out), want)
	})
}

func TestReluBackwardLong(t *testing.T) {
	r := newRand(41)
	const n = 3*elemChunk + 17
	x, dy := withSpecials(r, randF32(r, n), 0.05), withSpecials(r, randF32(r, n), 0.05)
	want := make([]float32, n)
	for i, v := range x {
		switch {
		case v != v:
			want[i] = strictmath.NaN()
		case v > 0:
			want[i] = strictmath.Canon(dy[i])
		}
	}
	eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
		out, err := s.ReluBackward(bg, tensorF32(t, s, []int{n}, x), tensorF32(t, s, []int{n}, dy))
		if err != nil {
			t.Fatalf("relu_backward: %v", err)
		}
		checkBits(t, "relu_backward", readF32(t, s, out), want)
	})
}

// TestRunTree checks that runTree, fed the values one at a time, adds them
// as strictmath.TreeSum does, for every count up to a few hundred.
func TestRunTree(t *testing.T) {
	r := newRand(42)
	for n := 1; n <= 600; n++ {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Ldexp(r.Float64()*2-1, r.IntN(40)-20))
		}
		if n%7 == 0 {
			withSpecials(r, v, 0.02)
		}
		tree := newRunTree(2, n)
		for _, x := range v {
			tree.cur[0], tree.cur[1] = x, -x
			tree.push()
		}
		var got [2]float32
		tree.finish(got[:])
		neg := make([]float32, n)
		for i, x := range v {
			neg[i] = -x
		}
		want := [2]float32{strictmath.Canon(strictmath.TreeSum(v)), strictmath.Canon(strictmath.TreeSum(neg))}
		if !sameBits(got[:], want[:]) {
			t.Fatalf("%d values: got %v, want %v", n, got, want)
		}
	}
}

// naiveReduceSum is reduce_sum by the contract's words: every output's terms
// in row-major order of the summed axes (the order x lists them in), then
// canon(BlockSum).
func naiveReduceSum(x []float32, shape []int, mask uint32) []float32 {
	outs := 1
	for i, d := range shape {
		if mask&(1<<i) == 0 {
			outs *= d
		}
	}
	terms := make([][]float32, outs)
	idx := make([]int, len(shape))
	for _, v := range x {
		o := 0
		for i, d := range shape {
			if mask&(1<<i) == 0 {
				o = o*d + idx[i]
			}
		}
		terms[o] = append(terms[o], v)
		for i := len(shape) - 1; i >= 0; i-- {
			if idx[i]++; idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	y := make([]float32, outs)
	for o, ts := range terms {
		y[o] = strictmath.Canon(strictmath.BlockSum(ts))
	}
	return y
}

func TestReduceSum(t *testing.T) {
	type reduceCase struct {
		shape []int
		axes  []int
	}
	cases := []reduceCase{
		{[]int{1}, []int{0}},
		{[]int{7}, []int{0}},
		{[]int{300}, []int{0}},
		{[]int{2100}, []int{0}},   // eight runs and a short one, of one output
		{[]int{5000}, []int{0}},   // whole groups of eight runs
		{[]int{64, 10}, []int{0}}, // a dense bias gradient: one run
		{[]int{600, 10}, []int{0}},
		{[]int{1000, 700}, []int{0}}, // tiles of lanes, a tree over runs
		{[]int{3, 70000}, []int{0}},  // one run, wide tiles
		{[]int{257, 3}, []int{1}},
		{[]int{5, 2049}, []int{1}},
		{[]int{4, 3, 7, 9}, []int{0, 2, 3}},  // a convolution's bias gradient
		{[]int{9, 13, 6, 5}, []int{0, 2, 3}}, // runs across images, 13 outputs
		{[]int{16, 2, 14, 14}, []int{0, 2, 3}},
		{[]int{3, 1, 200, 1}, []int{0, 2, 3}}, // one output after all
		{[]int{2, 3, 4}, []int{1}},
		{[]int{300, 2, 5}, []int{0, 2}},
		{[]int{2, 300, 3, 5}, []int{1, 3}},
		{[]int{2, 300, 3, 5}, []int{0, 1}},
		{[]int{2, 300, 3, 5}, []int{0, 2}},
		{[]int{2, 3, 4, 5}, []int{0, 1, 2, 3}},
		{[]int{1, 5, 1, 3}, []int{0, 2}}, // size-1 axes summed alone
		{[]int{1, 5, 1, 3}, []int{1}},
		{[]int{2, 1, 3, 1, 2, 1, 3, 2}, []int{1, 2, 5, 7}},
		{[]int{3, 2, 3, 2, 3, 2, 3, 5}, []int{0, 2, 4, 6}},
		{[]int{3, 2, 3, 2, 3, 2, 3, 5}, []int{1, 3, 5, 7}},
		{[]int{3, 2, 3, 2, 3, 2, 3, 5}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
	}
	// Every subset of the axes of a rank-4 tensor.
	for m := uint32(1); m < 16; m++ {
		var axes []int
		for i := range 4 {
			if m&(1<<i) != 0 {
				axes = append(axes, i)
			}
		}
		cases = append(cases, reduceCase{[]int{5, 3, 70, 4}, axes})
	}
	r := newRand(43)
	for _, c := range cases {
		x := withSpecials(r, randF32(r, product(c.shape)), 0.002)
		var mask uint32
		for _, a := range c.axes {
			mask |= 1 << a
		}
		want := naiveReduceSum(x, c.shape, mask)
		t.Run(fmt.Sprintf("%v-axes%v", c.shape, c.axes), func(t *testing.T) {
			eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
				out, err := s.ReduceSum(bg, tensorF32(t, s, c.shape, x), c.axes...)
				if err != nil {
					t.Fatalf("reduce_sum: %v", err)
				}
				checkBits(t, "reduce_sum", readF32(t, s, out), want)
			})
		})
	}
}

func TestReduceSumHand(t *testing.T) {
	big := float32(math.MaxFloat32)
	for _, c := range []struct {
		name  string
		shape []int
		axes  []int
		x     []float32
		want  []float32
	}{
		// A sum starts at +0: -0 terms give +0.
		{"negative zeros", []int{2, 2}, []int{0}, []float32{negZ, negZ, negZ, 1}, []float32{0, 1}},
		{"one term of -0", []int{1, 2}, []int{0}, []float32{negZ, 2}, []float32{0, 2}},
		{"nan payload", []int{2, 2}, []int{1}, []float32{nanPay, 1, inf, -inf}, []float32{strictmath.NaN(), strictmath.NaN()}},
		{"overflow", []int{3}, []int{0}, []float32{big, big, -big}, []float32{inf}},
		{"rows", []int{2, 3}, []int{1}, []float32{1, 2, 3, 4, 5, 6}, []float32{6, 15}},
		{"columns", []int{2, 3}, []int{0}, []float32{1, 2, 3, 4, 5, 6}, []float32{5, 7, 9}},
		{"everything", []int{2, 3}, []int{0, 1}, []float32{1, 2, 3, 4, 5, 6}, []float32{21}},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
				out, err := s.ReduceSum(bg, tensorF32(t, s, c.shape, c.x), c.axes...)
				if err != nil {
					t.Fatalf("reduce_sum: %v", err)
				}
				checkBits(t, c.name, readF32(t, s, out), c.want)
			})
		})
	}
}

// TestReduceSumBlocks checks the tree over the runs where its shape shows:
// 2^24 and then 256 ones in each of three runs, which a single chain would
// sum to 2^24 (each 1 lost) and the runs sum to 2^24 + 512.
func TestReduceSumBlocks(t *testing.T) {
	x := make([]float32, 3*runLen)
	for i := range x {
		x[i] = 1
	}
	x[0] = 1 << 24
	want := strictmath.Canon(strictmath.BlockSum(x))
	if want != 1<<24+2*runLen {
		t.Fatalf("BlockSum gives %g", want)
	}
	eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
		for _, c := range []struct {
			shape, axes []int
		}{
			{[]int{len(x)}, []int{0}},
			{[]int{len(x), 1}, []int{0}},
			{[]int{len(x), 1}, []int{0, 1}},
			{[]int{1, 3, runLen}, []int{0, 1, 2}},
			{[]int{3, runLen, 1}, []int{0, 1}},
		} {
			out, err := s.ReduceSum(bg, tensorF32(t, s, c.shape, x), c.axes...)
			if err != nil {
				t.Fatalf("reduce_sum %v: %v", c.shape, err)
			}
			checkBits(t, fmt.Sprint(c.shape), readF32(t, s, out), []float32{want})
		}
	})
}

// poolChoice returns the offset within its plane of the value maxpool2d
// keeps from window (oh, ow), scanned row-major: the first of the largest,
// the first NaN.
func poolChoice(xp []float32, H, W, oh, ow int, p accel.Pool2DParams) int {
	best := -1
	for kh := range p.KernelH {
		for kw := range p.KernelW {
			ih, iw := oh*p.StrideH-p.PadTop+kh, ow*p.StrideW-p.PadLeft+kw
			if ih < 0 || ih >= H || iw < 0 || iw >= W {
				continue
			}
			i := ih*W + iw
			if best < 0 {
				best = i
				continue
			}
			m, v := xp[best], xp[i]
			if m == m && (v != v || v > m) {
				best = i
			}
		}
	}
	return best
}

// naiveMaxPool2DBackward is maxpool2d_backward by the contract's words: each
// position sums from +0 the gradients of the windows that chose it, in
// row-major order of the windows.
func naiveMaxPool2DBackward(x, dy []float32, xs []int, p accel.Pool2DParams) []float32 {
	H, W := xs[2], xs[3]
	OH := (H+p.PadTop+p.PadBottom-p.KernelH)/p.StrideH + 1
	OW := (W+p.PadLeft+p.PadRight-p.KernelW)/p.StrideW + 1
	dx := make([]float32, len(x))
	for pl := range xs[0] * xs[1] {
		xp, gp := x[pl*H*W:(pl+1)*H*W], dy[pl*OH*OW:(pl+1)*OH*OW]
		chosen := make([]int, OH*OW)
		for oh := range OH {
			for ow := range OW {
				chosen[oh*OW+ow] = poolChoice(xp, H, W, oh, ow, p)
			}
		}
		for i := range H * W {
			var s float32
			for w, c := range chosen {
				if c == i {
					s = s + gp[w]
				}
			}
			dx[pl*H*W+i] = strictmath.Canon(s)
		}
	}
	return dx
}

func TestMaxPool2DBackward(t *testing.T) {
	pool := func(kh, kw, sh, sw, pt, pl, pb, pr int) accel.Pool2DParams {
		return accel.Pool2DParams{KernelH: kh, KernelW: kw, StrideH: sh, StrideW: sw, PadTop: pt, PadLeft: pl, PadBottom: pb, PadRight: pr}
	}
	r := newRand(44)
	for _, c := range []struct {
		name  string
		shape []int
		p     accel.Pool2DParams
		// values, when not nil, draws the input from few values, for
		// ties.
		values []float32
	}{
		{"1x1", []int{1, 1, 1, 1}, pool(1, 1, 1, 1, 0, 0, 0, 0), nil},
		{"mnist 2x2", []int{3, 4, 28, 28}, pool(2, 2, 2, 2, 0, 0, 0, 0), nil},
		{"2x2 odd size", []int{2, 3, 7, 9}, pool(2, 2, 2, 2, 0, 0, 0, 0), nil},
		{"2x2 padded", []int{2, 2, 7, 9}, pool(2, 2, 2, 2, 1, 1, 1, 1), nil},
		{"2x2 stride 1", []int{2, 2, 6, 7}, pool(2, 2, 1, 1, 0, 0, 0, 0), nil},
		{"3x3 stride 1 padded", []int{2, 3, 9, 8}, pool(3, 3, 1, 1, 1, 1, 1, 1), nil},
		{"3x2 strides 2x1", []int{1, 2, 11, 10}, pool(3, 2, 2, 1, 2, 1, 1, 0), nil},
		{"stride above kernel", []int{2, 2, 10, 11}, pool(2, 3, 3, 4, 1, 0, 0, 2), nil},
		{"ties of zeros", []int{2, 3, 8, 8}, pool(3, 3, 1, 1, 1, 1, 1, 1), []float32{0, negZ}},
		{"ties 2x2", []int{2, 3, 8, 8}, pool(2, 2, 2, 2, 0, 0, 0, 0), []float32{0, negZ, -1, 1}},
		{"ties overlapping", []int{1, 2, 9, 9}, pool(3, 2, 1, 1, 0, 1, 2, 0), []float32{1, 2, negZ}},
		{"nans", []int{2, 2, 9, 9}, pool(3, 3, 2, 1, 1, 1, 1, 1), []float32{1, nanPay, -inf, 2, negZ, 0}},
		{"nans 2x2", []int{2, 2, 8, 8}, pool(2, 2, 2, 2, 0, 0, 0, 0), []float32{1, nanPay, -inf, strictmath.NaN()}},
		// Planes large enough to be split into bands of rows.
		{"bands overlapping", []int{1, 2, 200, 150}, pool(5, 4, 1, 2, 2, 3, 4, 1), nil},
		{"bands 2x2", []int{1, 1, 600, 300}, pool(2, 2, 2, 2, 0, 0, 0, 0), nil},
		{"bands stride 3", []int{1, 1, 500, 400}, pool(3, 3, 3, 3, 1, 1, 2, 2), []float32{1, 2, 3, nanPay}},
		{"long window", []int{1, 1, 3, 700}, pool(2, 600, 1, 1, 1, 599, 0, 1), nil},
	} {
		xs := c.shape
		x := randF32(r, product(xs))
		if c.values != nil {
			for i := range x {
				x[i] = c.values[r.IntN(len(c.values))]
			}
		}
		H, W := xs[2], xs[3]
		OH := (H+c.p.PadTop+c.p.PadBottom-c.p.KernelH)/c.p.StrideH + 1
		OW := (W+c.p.PadLeft+c.p.PadRight-c.p.KernelW)/c.p.StrideW + 1
		dys := []int{xs[0], xs[1], OH, OW}
		// Gradients with -0, NaN, Inf and values that overflow where they
		// add up.
		dy := withSpecials(r, randF32(r, product(dys)), 0.05)
		want := naiveMaxPool2DBackward(x, dy, xs, c.p)
		t.Run(c.name, func(t *testing.T) {
			eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
				out, err := s.MaxPool2DBackward(bg, tensorF32(t, s, xs, x), tensorF32(t, s, dys, dy), c.p)
				if err != nil {
					t.Fatalf("maxpool2d_backward: %v", err)
				}
				checkBits(t, c.name, readF32(t, s, out), want)
			})
		})
	}
}

func TestMaxPool2DBackwardHand(t *testing.T) {
	p := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1}
	for _, c := range []struct {
		name  string
		x, dy []float32 // x 1x1x2x3, dy 1x1x1x2
		want  []float32
	}{
		// Both windows choose the 5; its gradients add up.
		{"overlap adds", []float32{1, 5, 2, 0, 3, 4}, []float32{1.5, 2}, []float32{0, 3.5, 0, 0, 0, 0}},
		// -0 and +0 tie: the first wins.
		{"zeros tie", []float32{negZ, 0, 0, negZ, negZ, 0}, []float32{1, 2}, []float32{1, 2, 0, 0, 0, 0}},
		// A single -0 gradient gives +0.
		{"negative zero gradient", []float32{1, 5, 2, 0, 3, 4}, []float32{negZ, negZ}, []float32{0, 0, 0, 0, 0, 0}},
		// The first NaN wins, whatever comes after.
		{"nan", []float32{1, nanPay, inf, 0, strictmath.NaN(), 4}, []float32{1, 2}, []float32{0, 3, 0, 0, 0, 0}},
		{"nan gradient", []float32{1, 5, 2, 0, 3, 4}, []float32{nanPay, 1}, []float32{0, strictmath.NaN(), 0, 0, 0, 0}},
		{"inf - inf", []float32{1, 5, 2, 0, 3, 4}, []float32{inf, -inf}, []float32{0, strictmath.NaN(), 0, 0, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachBackwardKernel(t, func(t *testing.T, s *accel.Session) {
				out, err := s.MaxPool2DBackward(bg, tensorF32(t, s, []int{1, 1, 2, 3}, c.x), tensorF32(t, s, []int{1, 1, 1, 2}, c.dy), p)
				if err != nil {
					t.Fatalf("maxpool2d_backward: %v", err)
				}
				checkBits(t, c.name, readF32(t, s, out), c.want)
			})
		})
	}
}

// TestBackwardDeadline checks that a deadline stops long calls of one plane
// or one output, which are single work items.
func TestBackwardDeadline(t *testing.T) {
	s := newSession(t, 2)
	const side = 2048
	plane := tensorF32(t, s, []int{1, 1, side, side}, make([]float32, side*side))
	win := accel.Pool2DParams{KernelH: 256, KernelW: 256, StrideH: 1, StrideW: 1, PadTop: 128, PadLeft: 128, PadBottom: 128, PadRight: 128}
	grad := tensorF32(t, s, []int{1, 1, side + 1, side + 1}, make([]float32, (side+1)*(side+1)))
	const n = 1 << 26
	long := tensorF32(t, s, []int{n}, make([]float32, n))
	for name, op := range map[string]func(ctx context.Context) error{
		"maxpool2d_backward": func(ctx context.Context) error {
			_, err := s.MaxPool2DBackward(ctx, plane, grad, win)
			return err
		},
		"reduce_sum": func(ctx context.Context) error {
			// Many times over: one pass may end before the deadline.
			for range 1000 {
				out, err := s.ReduceSum(ctx, long, 0)
				if err != nil {
					return err
				}
				s.Free(out)
			}
			return nil
		},
	} {
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		start := time.Now()
		err := op(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s past its deadline: %v, want context.DeadlineExceeded", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v to notice its deadline", name, d)
		}
	}
}

// The benchmarks call the kernels on outputs allocated once: a fresh
// output's pages, first touched in the kernel, would cost more than the
// kernel on a VM that backs memory lazily.

// benchOutput returns an f32 tensor of shape whose memory is resident.
func benchOutput(b *testing.B, s *accel.Session, shape []int) *accel.Tensor {
	out, err := s.NewTensor(accel.F32, shape)
	if err != nil {
		b.Fatal(err)
	}
	clear(f32(out))
	return out
}

// BenchmarkReduceSum times the bias gradients of a dense and of a
// convolutional layer, row sums and a sum of everything, with every kernel
// level this CPU runs, in G elements summed a second.
func BenchmarkReduceSum(b *testing.B) {
	for _, c := range []struct {
		name  string
		shape []int
		axes  []int
	}{
		{"dense_bias_64x128", []int{64, 128}, []int{0}},
		{"dense_bias_4096x1024", []int{4096, 1024}, []int{0}},
		{"conv_bias_64x32x28x28", []int{64, 32, 28, 28}, []int{0, 2, 3}},
		{"conv_bias_64x64x14x14", []int{64, 64, 14, 14}, []int{0, 2, 3}},
		{"rows_4096x1024", []int{4096, 1024}, []int{1}},
		{"all_2^24", []int{1 << 24}, []int{0}},
	} {
		x := randF32(newRand(45), product(c.shape))
		var mask uint32
		for _, a := range c.axes {
			mask |= 1 << a
		}
		outShape, err := accel.ReduceSum.Shapes([][]int{c.shape}, accel.ReduceSumParams{Axes: mask})
		if err != nil {
			b.Fatal(err)
		}
		for _, kern := range kernelLevels {
			for _, threads := range benchThreads() {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", c.name, kern.name, threads), func(b *testing.B) {
					k := newWithKernels(threads, kern)
					s := sessionOn(b, k)
					xt, out := tensorF32(b, s, c.shape, x), benchOutput(b, s, outShape[0])
					for b.Loop() {
						if err := k.ReduceSum(bg, out, xt, mask); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
				})
			}
		}
	}
}

// BenchmarkMaxPool2DBackward times the pooling layer of an MNIST network and
// the overlapping 3x3 pool of a ResNet stem, in G input elements a second.
func BenchmarkMaxPool2DBackward(b *testing.B) {
	for _, c := range []struct {
		name  string
		shape []int
		p     accel.Pool2DParams
	}{
		{"mnist_64x32x28x28_2x2s2", []int{64, 32, 28, 28}, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}},
		{"resnet_8x64x112x112_3x3s2", []int{8, 64, 112, 112}, accel.Pool2DParams{KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}},
	} {
		r := newRand(46)
		x := randF32(r, product(c.shape))
		ys, err := accel.Pool2DShape(c.shape, c.p)
		if err != nil {
			b.Fatal(err)
		}
		dy := randF32(r, product(ys))
		for _, threads := range benchThreads() {
			b.Run(fmt.Sprintf("%s/threads=%d", c.name, threads), func(b *testing.B) {
				k := New(threads)
				s := sessionOn(b, k)
				xt, dyt, out := tensorF32(b, s, c.shape, x), tensorF32(b, s, ys, dy), benchOutput(b, s, c.shape)
				for b.Loop() {
					if err := k.MaxPool2DBackward(bg, out, xt, dyt, c.p); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
		}
	}
}

// BenchmarkReluBackward times the gradient of relu over 2^22 elements.
func BenchmarkReluBackward(b *testing.B) {
	const n = 1 << 22
	r := newRand(47)
	x, dy := randF32(r, n), randF32(r, n)
	for _, threads := range benchThreads() {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			k := New(threads)
			s := sessionOn(b, k)
			xt, dyt, out := tensorF32(b, s, []int{n}, x), tensorF32(b, s, []int{n}, dy), benchOutput(b, s, []int{n})
			for b.Loop() {
				if err := k.ReluBackward(bg, out, xt, dyt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
