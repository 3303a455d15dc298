package strictcpu

import (
	"fmt"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// BenchmarkReluClip times relu and ReLU6's clip over 1<<22 elements with
// every kernel level this CPU runs, on one thread and on every core, into an
// output allocated once, in nanoseconds an element.
func BenchmarkReluClip(b *testing.B) {
	const n = 1 << 22
	r := newRand(75)
	xs := elemInputs(r, n, 0, 6, false)
	for _, op := range []string{"relu", "clip"} {
		for _, kern := range kernelLevels {
			for _, threads := range benchThreads() {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", op, kern.name, threads), func(b *testing.B) {
					k := newWithKernels(threads, kern)
					s := sessionOn(b, k)
					x, out := tensorF32(b, s, []int{n}, xs), tensorF32(b, s, []int{n}, make([]float32, n))
					for b.Loop() {
						var err error
						if op == "relu" {
							err = k.Relu(bg, out, x)
						} else {
							err = k.Clip(bg, out, x, accel.ClipParams{Min: 0, Max: 6})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/float64(b.N), "ns/elem")
				})
			}
		}
	}
}
