//go:build wasip1

// Command matmul is an example guest: it multiplies two random matrices
// through the node's matmul host function, does the same product with a
// plain loop inside WebAssembly (what a canister can do today), and checks
// that the two agree: bit for bit in strict mode. The speedup it prints is
// over that loop as the guest runs it: under accelnode run, instrumented for
// metering and deadlines, which costs tight loops a quarter to two fifths
// of their speed against uninstrumented WebAssembly.
//
//	accelnode run bin/examples/matmul.wasm -- -n 256
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/accelnode/accelnode/examples/internal/check"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	m := flag.Int("m", 0, "rows of A (default n)")
	k := flag.Int("k", 0, "columns of A, rows of B (default n)")
	n := flag.Int("n", 256, "columns of B")
	reps := flag.Int("reps", 3, "repetitions; the best time is reported")
	only := flag.String("only", "both", "what to run: host, plain or both")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *m == 0 {
		*m = *n
	}
	if *k == 0 {
		*k = *n
	}
	if err := run(*m, *k, *n, *reps, *only, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "matmul:", err)
		os.Exit(1)
	}
}

func run(m, k, n, reps int, only string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	a, b := random(rng, m*k), random(rng, k*n)
	flops := 2 * float64(m) * float64(n) * float64(k)

	info, err := guest.Info()
	if err != nil {
		return err
	}
	fmt.Printf("matmul %dx%dx%d on %s (%s mode, %s)\n", m, k, n, info.Backend, info.Mode, info.Device)

	var host, plain []float32
	var hostTime, plainTime time.Duration
	if only != "plain" {
		hostTime, err = best(reps, func() (err error) {
			host, err = guest.MatMulF32(a, m, k, b, n)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Printf("  host function: %9.2f ms  %8.3f GFLOP/s  (upload, compute, download; best of %d)\n", ms(hostTime), flops/hostTime.Seconds()/1e9, reps)
	}
	if only != "host" {
		plainTime, _ = best(reps, func() error {
			plain = plainMatMul(a, b, m, k, n)
			return nil
		})
		fmt.Printf("  plain wasm:    %9.2f ms  %8.3f GFLOP/s  (best of %d)\n", ms(plainTime), flops/plainTime.Seconds()/1e9, reps)
	}
	if host == nil || plain == nil {
		return nil
	}
	fmt.Printf("  speedup:       %9.1fx  over the plain loop above\n", plainTime.Seconds()/hostTime.Seconds())
	// Under accelnode run the loop is instrumented at load; say what that
	// does to the comparison.
	fmt.Println("  (under accelnode run that plain loop is instrumented, so that it is metered and a deadline can stop it:")
	fmt.Println("   about 0.6x the speed of the same loop uninstrumented; accelnode bench reports the speedup over both)")

	return check.Report(info.Mode, "the plain loop", host, plain, 1e-4)
}

// plainMatMul is the product a WebAssembly program computes without help:
// each output accumulates from +0 over k in order, which is also what the
// numerics contract specifies. The i-k-j loop order keeps B's rows in cache.
func plainMatMul(a, b []float32, m, k, n int) []float32 {
	c := make([]float32, m*n)
	for i := 0; i < m; i++ {
		ci := c[i*n : (i+1)*n]
		for p := 0; p < k; p++ {
			aip := a[i*k+p]
			bp := b[p*n : (p+1)*n]
			for j := range ci {
				ci[j] += aip * bp[j]
			}
		}
	}
	return c
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
