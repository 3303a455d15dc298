//go:build wasip1

// Command convbench times one convolution layer done by a guest: through the
// conv2d host function (upload x, w and the bias, convolve, read the output
// back, free), and inside WebAssembly with the node's reference kernels
// compiled into the guest (on ref.New(1), through an accel.Session, as
// examples/cnn does). -layer picks an MNIST first layer (64×1×28×28, 32 3×3
// filters) or a ResNet-50 3×3 layer (1×64×56×56, 64 filters), both with pad 1
// and a bias. Each way prints its best time of -reps and its GFLOP/s:
//
//	host: 12.345 ms 4.567 GFLOP/s (upload, conv2d, read back; best of 3)
//	plain: ...
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
	"github.com/accelnode/accelnode/hostfn/guest"
)

// layer is x [n,c,h,w] convolved with oc kh×kw filters, padding pad on every
// side, stride 1, plus a bias.
type layer struct {
	n, c, oc, h, w, kh, kw, pad int
}

var layers = map[string]layer{
	"mnist":  {n: 64, c: 1, oc: 32, h: 28, w: 28, kh: 3, kw: 3, pad: 1},
	"resnet": {n: 1, c: 64, oc: 64, h: 56, w: 56, kh: 3, kw: 3, pad: 1},
}

func (l layer) xShape() []int { return []int{l.n, l.c, l.h, l.w} }
func (l layer) wShape() []int { return []int{l.oc, l.c, l.kh, l.kw} }

// flops counts each multiply-add of the convolution as two, without the
// bias adds, as the node's benchmarks do.
func (l layer) flops() float64 {
	oh, ow := l.h+2*l.pad-l.kh+1, l.w+2*l.pad-l.kw+1
	return 2 * float64(l.n*l.oc*oh*ow) * float64(l.c*l.kh*l.kw)
}

func main() {
	name := flag.String("layer", "mnist", "mnist or resnet")
	only := flag.String("only", "both", "what to run: host, plain or both")
	reps := flag.Int("reps", 3, "repetitions; the best time is reported")
	flag.Parse()
	l, ok := layers[*name]
	if !ok || (*only != "host" && *only != "plain" && *only != "both") {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*name, l, *only, *reps); err != nil {
		fmt.Fprintln(os.Stderr, "convbench:", err)
		os.Exit(1)
	}
}

func run(name string, l layer, only string, reps int) error {
	rng := rand.New(rand.NewPCG(2, 3))
	x, w, bias := random(rng, size(l.xShape())), random(rng, size(l.wShape())), random(rng, l.oc)

	info, err := guest.Info()
	if err != nil {
		return err
	}
	fmt.Printf("conv2d %s (x %v, w %v, pad %d, bias) on %s (%s mode)\n", name, l.xShape(), l.wShape(), l.pad, info.Backend, info.Mode)

	var host, plain []float32
	var hostTime, plainTime time.Duration
	if only != "plain" {
		hostTime, err = best(reps, func() (err error) {
			host, err = hostConv(l, x, w, bias)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Printf("host: %.3f ms %.3f GFLOP/s (upload, conv2d, read back; best of %d)\n", ms(hostTime), l.flops()/hostTime.Seconds()/1e9, reps)
	}
	if only != "host" {
		plainTime, err = best(reps, func() (err error) {
			plain, err = plainConv(l, x, w, bias)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Printf("plain: %.3f ms %.3f GFLOP/s (ref kernels in WebAssembly; best of %d)\n", ms(plainTime), l.flops()/plainTime.Seconds()/1e9, reps)
	}
	if host != nil && plain != nil {
		var maxDiff float64
		for i := range host {
			maxDiff = max(maxDiff, math.Abs(float64(host[i])-float64(plain[i])))
		}
		fmt.Printf("speedup: %.1fx; largest difference %g over %d values\n", plainTime.Seconds()/hostTime.Seconds(), maxDiff, len(host))
	}
	return nil
}

// hostConv is the convolution through the host functions.
func hostConv(l layer, x, w, bias []float32) ([]float32, error) {
	var ts []guest.Tensor
	defer func() { guest.FreeAll(ts...) }()
	upload := func(data []float32, shape ...int) (guest.Tensor, error) {
		t, err := guest.FromFloat32(data, shape...)
		if err == nil {
			ts = append(ts, t)
		}
		return t, err
	}
	xt, err := upload(x, l.xShape()...)
	if err != nil {
		return nil, err
	}
	wt, err := upload(w, l.wShape()...)
	if err != nil {
		return nil, err
	}
	bt, err := upload(bias, l.oc)
	if err != nil {
		return nil, err
	}
	p := uint32(l.pad)
	y, err := guest.Conv2D(xt, wt, bt, guest.Conv2DParams{PadTop: p, PadLeft: p, PadBottom: p, PadRight: p})
	if err != nil {
		return nil, err
	}
	ts = append(ts, y)
	return y.Float32()
}

// plainConv is the same convolution with the reference kernels inside the
// guest, on one thread.
func plainConv(l layer, x, w, bias []float32) ([]float32, error) {
	s := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	defer s.Close()
	xt, err := s.FromFloat32(x, l.xShape()...)
	if err != nil {
		return nil, err
	}
	wt, err := s.FromFloat32(w, l.wShape()...)
	if err != nil {
		return nil, err
	}
	bt, err := s.FromFloat32(bias, l.oc)
	if err != nil {
		return nil, err
	}
	y, err := s.Conv2D(context.Background(), xt, wt, bt, accel.Conv2DParams{
		StrideH: 1, StrideW: 1, PadTop: l.pad, PadLeft: l.pad, PadBottom: l.pad, PadRight: l.pad,
		DilationH: 1, DilationW: 1, Groups: 1})
	if err != nil {
		return nil, err
	}
	return s.Float32(y)
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func random(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

func best(reps int, f func() error) (time.Duration, error) {
	bestTime := time.Duration(math.MaxInt64)
	for range max(reps, 1) {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		bestTime = min(bestTime, time.Since(start))
	}
	return bestTime, nil
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }
