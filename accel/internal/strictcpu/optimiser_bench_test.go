package strictcpu

import (
	"fmt"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// BenchmarkSoftmaxCrossEntropy times the loss of an MNIST batch, of a batch
// of many rows (the BlockSum's runs in parallel) and of a few rows of a large
// vocabulary (rows spread over the threads), on one thread and on every core.
func BenchmarkSoftmaxCrossEntropy(b *testing.B) {
	for _, d := range [][2]int{{64, 10}, {65536, 10}, {1024, 1000}, {8, 50000}} {
		n, k := d[0], d[1]
		b.Run(fmt.Sprintf("%dx%d", n, k), func(b *testing.B) {
			r := newRand(uint64(n))
			x := randF32(r, n*k)
			labels := make([]int32, n)
			for i := range labels {
				labels[i] = int32(r.IntN(k))
			}
			for _, threads := range benchThreads() {
				b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
					s := newSession(b, threads)
					xt, lt := tensorF32(b, s, []int{n, k}, x), tensorI32(b, s, []int{n}, labels)
					for b.Loop() {
						out, _, err := s.SoftmaxCrossEntropy(bg, xt, lt)
						if err != nil {
							b.Fatal(err)
						}
						s.Free(out)
					}
					b.ReportMetric(float64(n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
				})
			}
		})
	}
}

// BenchmarkOptimisers times a step of SGD with momentum and of Adam over the
// parameters of a small network and of a large one, on one thread and on
// every core, in elements a second and in bytes moved (read and written).
func BenchmarkOptimisers(b *testing.B) {
	for _, n := range []int{1 << 17, 1 << 24} {
		r := newRand(uint64(n))
		w, g, m := randF32(r, n), randF32(r, n), randF32(r, n)
		v := randF32(r, n)
		for i := range v {
			v[i] *= v[i]
		}
		for _, threads := range benchThreads() {
			b.Run(fmt.Sprintf("sgd_momentum/n=%d/threads=%d", n, threads), func(b *testing.B) {
				s := newSession(b, threads)
				wt, gt, vt := tensorF32(b, s, []int{n}, w), tensorF32(b, s, []int{n}, g), tensorF32(b, s, []int{n}, m)
				for b.Loop() {
					if err := s.SGDMomentum(bg, wt, gt, vt, accel.SGDParams{LearningRate: 1e-3, Momentum: 0.9}); err != nil {
						b.Fatal(err)
					}
				}
				optimiserMetrics(b, n, 5)
			})
			b.Run(fmt.Sprintf("adam/n=%d/threads=%d", n, threads), func(b *testing.B) {
				s := newSession(b, threads)
				wt, gt := tensorF32(b, s, []int{n}, w), tensorF32(b, s, []int{n}, g)
				mt, vt := tensorF32(b, s, []int{n}, m), tensorF32(b, s, []int{n}, v)
				for b.Loop() {
					if err := s.Adam(bg, wt, gt, mt, vt, adamDefaults); err != nil {
						b.Fatal(err)
					}
				}
				optimiserMetrics(b, n, 7)
			})
		}
	}
}

// optimiserMetrics reports elements and bytes a second of a step over n
// elements that moves words f32 words an element.
func optimiserMetrics(b *testing.B, n, words int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)*float64(b.N)/sec/1e9, "Gelem/s")
	b.ReportMetric(float64(4*words*n)*float64(b.N)/sec/1e9, "GB/s")
}
