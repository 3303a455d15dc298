package strictcpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
)

// threadCounts are the backends every result must agree across.
var threadCounts = []int{1, 3, 4}

// sprinkle puts special values into v at fixed places, so that invariance
// covers NaN, infinities and signed zeros too.
func sprinkle(v []float32) []float32 {
	special := []float32{nanPay, inf, -inf, negZ, 0, math.Float32frombits(3)}
	for i := range special {
		if k := (i*7919 + 13) % (len(v) + 1); k < len(v) && len(v) > 20 {
			v[k] = special[i]
		}
	}
	return v
}

// agree runs op on a fresh session per thread count and checks that every
// thread count gives the bits of the first.
func agree(t *testing.T, name string, op func(s *accel.Session) []float32) {
	t.Helper()
	var first []float32
	for _, threads := range threadCounts {
		got := op(newSession(t, threads))
		if first == nil {
			first = got
			continue
		}
		if !sameBits(got, first) {
			t.Errorf("%s: %d threads differ from %d", name, threads, threadCounts[0])
		}
	}
}

func TestThreadInvarianceMatMul(t *testing.T) {
	r := newRand(21)
	for _, d := range [][3]int{{37, 53, 29}, {1, 1, 1}, {1, 300, 1}, {300, 1, 1}, {1, 1, 300}, {2, 700, 301}, {130, 600, 70}, {3, 5, 1000}, {129, 2, 97}} {
		for _, p := range []accel.MatMulParams{{}, {TransA: true}, {TransB: true}, {TransA: true, TransB: true}} {
			m, k, n := d[0], d[1], d[2]
			a, b := sprinkle(randF32(r, m*k)), randF32(r, k*n)
			ashape, bshape := []int{m, k}, []int{k, n}
			if p.TransA {
				ashape = []int{k, m}
			}
			if p.TransB {
				bshape = []int{n, k}
			}
			agree(t, fmt.Sprintf("matmul %v %+v", d, p), func(s *accel.Session) []float32 {
				out, err := s.MatMul(bg, tensorF32(t, s, ashape, a), tensorF32(t, s, bshape, b), p)
				if err != nil {
					t.Fatalf("matmul: %v", err)
				}
				return readF32(t, s, out)
			})
		}
	}
}

func TestThreadInvarianceConv2D(t *testing.T) {
	r := newRand(22)
	for i, c := range convCases {
		x, w := sprinkle(randF32(r, product(c.xs))), randF32(r, product(c.ws))
		bias := randF32(r, c.ws[0])
		agree(t, fmt.Sprintf("conv2d case %d", i), func(s *accel.Session) []float32 {
			var bt *accel.Tensor
			if c.bias {
				bt = tensorF32(t, s, []int{c.ws[0]}, bias)
			}
			out, err := s.Conv2D(bg, tensorF32(t, s, c.xs, x), tensorF32(t, s, c.ws, w), bt, c.p)
			if err != nil {
				t.Fatalf("conv2d: %v", err)
			}
			return readF32(t, s, out)
		})
	}
}

func TestThreadInvarianceElementwise(t *testing.T) {
	r := newRand(23)
	for _, shape := range [][]int{{1}, {7, 3}, {3, 300, 1}, {2, 131, 307}, {1, 1, 1, 70001}} {
		n := product(shape)
		x := sprinkle(randF32(r, n))
		agree(t, fmt.Sprintf("relu %v", shape), func(s *accel.Session) []float32 {
			out, err := s.Relu(bg, tensorF32(t, s, shape, x))
			if err != nil {
				t.Fatalf("relu: %v", err)
			}
			return readF32(t, s, out)
		})
		agree(t, fmt.Sprintf("softmax %v", shape), func(s *accel.Session) []float32 {
			out, err := s.Softmax(bg, tensorF32(t, s, shape, x))
			if err != nil {
				t.Fatalf("softmax: %v", err)
			}
			return readF32(t, s, out)
		})
		for axis := range shape {
			bias := randF32(r, shape[axis])
			agree(t, fmt.Sprintf("add_bias %v axis %d", shape, axis), func(s *accel.Session) []float32 {
				out, err := s.AddBias(bg, tensorF32(t, s, shape, x), tensorF32(t, s, []int{shape[axis]}, bias), axis)
				if err != nil {
					t.Fatalf("add_bias: %v", err)
				}
				return readF32(t, s, out)
			})
		}
	}
}

func TestThreadInvarianceMaxPool2D(t *testing.T) {
	r := newRand(24)
	for _, c := range []struct {
		shape []int
		p     accel.Pool2DParams
	}{
		{[]int{1, 1, 1, 1}, accel.Pool2DParams{KernelH: 1, KernelW: 1, StrideH: 1, StrideW: 1}},
		{[]int{2, 3, 17, 13}, accel.Pool2DParams{KernelH: 3, KernelW: 2, StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 2, PadRight: 0}},
		{[]int{1, 2, 300, 250}, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}},
		{[]int{3, 1, 9, 300}, accel.Pool2DParams{KernelH: 5, KernelW: 4, StrideH: 3, StrideW: 3, PadTop: 4, PadLeft: 3, PadBottom: 4, PadRight: 3}},
	} {
		x := sprinkle(randF32(r, product(c.shape)))
		agree(t, fmt.Sprintf("maxpool2d %v %+v", c.shape, c.p), func(s *accel.Session) []float32 {
			out, err := s.MaxPool2D(bg, tensorF32(t, s, c.shape, x), c.p)
			if err != nil {
				t.Fatalf("maxpool2d: %v", err)
			}
			return readF32(t, s, out)
		})
	}
}

func TestThreadInvarianceTSNEStep(t *testing.T) {
	for _, n := range []int{2, 3, 300, 1001} {
		in := randomTSNE(newRand(uint64(25+n)), n, 12)
		p := accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}
		agree(t, fmt.Sprintf("tsne_step n=%d", n), func(s *accel.Session) []float32 {
			st := in.state(t, s)
			var kls []float32
			for range 3 { // a few steps, so that U and G feed back
				kl, err := s.TSNEStep(bg, st, p)
				if err != nil {
					t.Fatalf("tsne_step: %v", err)
				}
				kls = append(kls, kl)
			}
			if kls[0] != kls[0] || kls[0] <= 0 {
				t.Errorf("tsne_step n=%d: kl %g", n, kls[0])
			}
			out := append(readF32(t, s, st.Y), readF32(t, s, st.Update)...)
			out = append(out, readF32(t, s, st.Gains)...)
			return append(out, kls...)
		})
	}
}

func TestCancelMatMul(t *testing.T) {
	r := newRand(26)
	s := newSession(t, 2)
	const n = 1024
	a := tensorF32(t, s, []int{n, n}, randF32(r, n*n))
	b := tensorF32(t, s, []int{n, n}, randF32(r, n*n))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.MatMul(ctx, a, b, accel.MatMulParams{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled matmul: %v, want context.Canceled", err)
	}
	if s.LiveTensors() != 2 {
		t.Errorf("%d live tensors after a cancelled matmul, want 2", s.LiveTensors())
	}

	// Cancelled while it runs.
	ctx, cancel = context.WithCancel(bg)
	time.AfterFunc(5*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.MatMul(ctx, a, b, accel.MatMulParams{TransB: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("matmul cancelled under way: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("matmul took %v to notice its cancellation", d)
	}

	// Every other operation checks ctx too.
	x := tensorF32(t, s, []int{1, 1, 4, 4}, randF32(r, 16))
	ctx, cancel = context.WithCancel(bg)
	cancel()
	for name, op := range map[string]func() error{
		"conv2d": func() error {
			_, err := s.Conv2D(ctx, x, x, nil, convParams(1, 0, 1, 1))
			return err
		},
		"add_bias": func() error {
			_, err := s.AddBias(ctx, a, tensorF32(t, s, []int{n}, make([]float32, n)), 1)
			return err
		},
		"relu": func() error {
			_, err := s.Relu(ctx, a)
			return err
		},
		"softmax": func() error {
			_, err := s.Softmax(ctx, a)
			return err
		},
		"maxpool2d": func() error {
			_, err := s.MaxPool2D(ctx, x, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1})
			return err
		},
	} {
		if err := op(); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled %s: %v, want context.Canceled", name, err)
		}
	}
}

// TestDeadlineLongKernels checks that a deadline stops operations whose
// single output rows are long work: a full 1-D convolution of a long signal
// with a kernel as long, and a max-pool with as long a window. Each would run
// for many seconds.
func TestDeadlineLongKernels(t *testing.T) {
	const w = 1 << 16
	// A full correlation of a shorter signal: its windows unrolled and
	// packed, the scratch the Session counts (4 GiB here), must fit the
	// session's tensor memory. A single output channel is computed in the
	// contract's own loops, which allocate none of it.
	s, err := accel.NewSession(newBackend(New(2)), accel.Strict, accel.Limits{MaxBytes: 8 << 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	signal := tensorF32(t, s, []int{1, 1, 1, w}, make([]float32, w))
	const cw = 1 << 14
	short := tensorF32(t, s, []int{1, 1, 1, cw}, make([]float32, cw))
	full := accel.Conv2DParams{StrideH: 1, StrideW: 1, PadLeft: cw - 1, PadRight: cw - 1, DilationH: 1, DilationW: 1, Groups: 1}
	for name, op := range map[string]func(ctx context.Context) error{
		"conv2d": func(ctx context.Context) error {
			_, err := s.Conv2D(ctx, short, short, nil, full)
			return err
		},
		"maxpool2d": func(ctx context.Context) error {
			_, err := s.MaxPool2D(ctx, signal, accel.Pool2DParams{KernelH: 1, KernelW: w, StrideH: 1, StrideW: 1, PadLeft: w - 1, PadRight: w - 1})
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		start := time.Now()
		err := op(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s past its deadline: %v, want context.DeadlineExceeded", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v to notice its deadline", name, d)
		}
	}
}

// TestKernelPanicIsAnError checks that a panicking work item, a kernel bug,
// comes back as an error on any thread count instead of killing the node.
func TestKernelPanicIsAnError(t *testing.T) {
	for _, threads := range []int{1, 3} {
		err := New(threads).forEach(bg, 10, func(item int) {
			if item == 7 {
				panic("index out of range")
			}
		})
		if err == nil || !strings.Contains(err.Error(), "kernel panicked: index out of range") {
			t.Errorf("%d threads: %v, want the panic as an error", threads, err)
		}
	}
}
