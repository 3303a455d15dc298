//go:build wasip1

// Command cnn is an example guest: the forward pass of a small
// convolutional network (conv, relu, max-pool, conv, relu, max-pool, dense,
// softmax) over a batch of synthetic 28x28 digit-like images, through the
// node's host functions with data kept on the backend between layers.
//
// It then runs the same network inside WebAssembly with the node's own
// reference kernels compiled into the guest, and checks that both agree: bit
// for bit in strict mode. The weights are random, so the classes it prints
// are arbitrary; the point is the data path and its numerics.
//
//	accelnode run bin/examples/cnn.wasm -- -batch 16
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/examples/internal/check"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	batch := flag.Int("batch", 8, "images in the batch")
	seed := flag.Uint64("seed", 1, "random seed for images and weights")
	flag.Parse()
	if err := run(*batch, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "cnn:", err)
		os.Exit(1)
	}
}

// layer is a weight tensor and its bias.
type layer struct {
	w, b   []float32
	wShape []int
}

type network struct{ conv1, conv2, dense layer }

func newNetwork(rng *rand.Rand) network {
	init := func(shape []int, fanIn, outputs int) layer {
		n := 1
		for _, d := range shape {
			n *= d
		}
		scale := float32(math.Sqrt(2 / float64(fanIn)))
		l := layer{w: make([]float32, n), b: make([]float32, outputs), wShape: shape}
		for i := range l.w {
			l.w[i] = float32(rng.NormFloat64()) * scale
		}
		for i := range l.b {
			l.b[i] = float32(rng.NormFloat64()) * 0.01
		}
		return l
	}
	return network{
		conv1: init([]int{8, 1, 3, 3}, 9, 8),
		conv2: init([]int{16, 8, 3, 3}, 72, 16),
		dense: init([]int{16 * 7 * 7, 10}, 16*7*7, 10),
	}
}

// images draws strokes, rings and crosses on a 28x28 canvas.
func images(rng *rand.Rand, batch int) []float32 {
	x := make([]float32, batch*28*28)
	for n := 0; n < batch; n++ {
		img := x[n*784 : (n+1)*784]
		cx, cy := 10+rng.Float64()*8, 10+rng.Float64()*8
		r := 5 + rng.Float64()*4
		kind := rng.IntN(3)
		for y := 0; y < 28; y++ {
			for xx := 0; xx < 28; xx++ {
				dx, dy := float64(xx)-cx, float64(y)-cy
				var v float64
				switch kind {
				case 0: // ring
					v = 1 - math.Abs(math.Hypot(dx, dy)-r)/1.5
				case 1: // vertical stroke
					v = 1 - math.Abs(dx)/1.5
					if math.Abs(dy) > r {
						v = 0
					}
				default: // cross
					v = 1 - math.Min(math.Abs(dx-dy), math.Abs(dx+dy))/1.5
					if math.Hypot(dx, dy) > r {
						v = 0
					}
				}
				img[y*28+xx] = float32(math.Max(v, 0))
			}
		}
	}
	return x
}

func run(batch int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	net := newNetwork(rng)
	x := images(rng, batch)

	info, err := guest.Info()
	if err != nil {
		return err
	}
	fmt.Printf("cnn forward pass, batch %d, on %s (%s mode)\n", batch, info.Backend, info.Mode)

	start := time.Now()
	host, err := forward(hostOps{}, net, x, batch)
	if err != nil {
		return err
	}
	hostTime := time.Since(start)

	session, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		return err
	}
	defer session.Close()
	start = time.Now()
	local, err := forward(localOps{session}, net, x, batch)
	if err != nil {
		return err
	}
	localTime := time.Since(start)

	for n := 0; n < batch; n++ {
		p := host[n*10 : (n+1)*10]
		top, sum := 0, float32(0)
		for c, v := range p {
			sum += v
			if v > p[top] {
				top = c
			}
		}
		fmt.Printf("  image %2d: class %d (p=%.3f, sum of p=%.6f)\n", n, top, p[top], sum)
	}
	fmt.Printf("  host functions:  %8.2f ms\n", hostTime.Seconds()*1e3)
	fmt.Printf("  inside the guest: %7.2f ms (reference kernels compiled to WebAssembly)\n", localTime.Seconds()*1e3)

	return check.Report(info.Mode, "the in-guest pass", host, local, 0)
}

// ops is what the forward pass needs, served either by the node's host
// functions or by kernels inside the guest.
type ops[T any] interface {
	tensor(data []float32, shape ...int) (T, error)
	conv(x T, l [2]T) (T, error)
	relu(x T) (T, error)
	pool(x T) (T, error)
	reshape(x T, shape ...int) error
	dense(x T, l [2]T) (T, error)
	softmax(x T) (T, error)
	read(x T) ([]float32, error)
	free(ts ...T)
}

func forward[T any](o ops[T], net network, x []float32, batch int) ([]float32, error) {
	var live []T
	defer func() { o.free(live...) }()
	keep := func(t T, err error) (T, error) {
		if err == nil {
			live = append(live, t)
		}
		return t, err
	}
	load := func(l layer) (w [2]T, err error) {
		if w[0], err = keep(o.tensor(l.w, l.wShape...)); err != nil {
			return w, err
		}
		w[1], err = keep(o.tensor(l.b, len(l.b)))
		return w, err
	}
	c1, err := load(net.conv1)
	if err != nil {
		return nil, err
	}
	c2, err := load(net.conv2)
	if err != nil {
		return nil, err
	}
	d, err := load(net.dense)
	if err != nil {
		return nil, err
	}
	h, err := keep(o.tensor(x, batch, 1, 28, 28))
	if err != nil {
		return nil, err
	}
	for _, conv := range [][2]T{c1, c2} {
		if h, err = keep(o.conv(h, conv)); err != nil {
			return nil, err
		}
		if h, err = keep(o.relu(h)); err != nil {
			return nil, err
		}
		if h, err = keep(o.pool(h)); err != nil {
			return nil, err
		}
	}
	if err := o.reshape(h, batch, 16*7*7); err != nil {
		return nil, err
	}
	if h, err = keep(o.dense(h, d)); err != nil {
		return nil, err
	}
	if h, err = keep(o.softmax(h)); err != nil {
		return nil, err
	}
	return o.read(h)
}

var (
	same    = guest.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
	halving = guest.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}
)

// hostOps runs each layer through the accel host functions.
type hostOps struct{}

func (hostOps) tensor(data []float32, shape ...int) (guest.Tensor, error) {
	return guest.FromFloat32(data, shape...)
}
func (hostOps) conv(x guest.Tensor, l [2]guest.Tensor) (guest.Tensor, error) {
	return guest.Conv2D(x, l[0], l[1], same)
}
func (hostOps) relu(x guest.Tensor) (guest.Tensor, error)  { return guest.Relu(x) }
func (hostOps) pool(x guest.Tensor) (guest.Tensor, error)  { return guest.MaxPool2D(x, halving) }
func (hostOps) reshape(x guest.Tensor, shape ...int) error { return x.Reshape(shape...) }
func (hostOps) dense(x guest.Tensor, l [2]guest.Tensor) (guest.Tensor, error) {
	y, err := guest.MatMul(x, l[0], 0)
	if err != nil {
		return y, err
	}
	defer y.Free()
	return guest.AddBias(y, l[1], 1)
}
func (hostOps) softmax(x guest.Tensor) (guest.Tensor, error) { return guest.Softmax(x) }
func (hostOps) read(x guest.Tensor) ([]float32, error)       { return x.Float32() }
func (hostOps) free(ts ...guest.Tensor)                      { guest.FreeAll(ts...) }

// localOps runs each layer with the reference kernels inside the guest.
type localOps struct{ s *accel.Session }

func (o localOps) tensor(data []float32, shape ...int) (*accel.Tensor, error) {
	return o.s.FromFloat32(data, shape...)
}
func (o localOps) conv(x *accel.Tensor, l [2]*accel.Tensor) (*accel.Tensor, error) {
	return o.s.Conv2D(context.Background(), x, l[0], l[1], accel.Conv2DParams{
		StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 1})
}
func (o localOps) relu(x *accel.Tensor) (*accel.Tensor, error) {
	return o.s.Relu(context.Background(), x)
}
func (o localOps) pool(x *accel.Tensor) (*accel.Tensor, error) {
	return o.s.MaxPool2D(context.Background(), x, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2})
}
func (o localOps) reshape(x *accel.Tensor, shape ...int) error { return o.s.Reshape(x, shape) }
func (o localOps) dense(x *accel.Tensor, l [2]*accel.Tensor) (*accel.Tensor, error) {
	y, err := o.s.MatMul(context.Background(), x, l[0], accel.MatMulParams{})
	if err != nil {
		return nil, err
	}
	defer o.s.Free(y)
	return o.s.AddBias(context.Background(), y, l[1], 1)
}
func (o localOps) softmax(x *accel.Tensor) (*accel.Tensor, error) {
	return o.s.Softmax(context.Background(), x)
}
func (o localOps) read(x *accel.Tensor) ([]float32, error) { return o.s.Float32(x) }
func (o localOps) free(ts ...*accel.Tensor) {
	for _, t := range ts {
		o.s.Free(t)
	}
}
