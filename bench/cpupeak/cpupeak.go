// Package cpupeak detects the processor and measures its FP32 peak and
// memory bandwidth, so that benchmark results can be reported as a share of
// what the machine can do. The FMA kernels here exist only to measure that
// roof; they never serve calls.
package cpupeak

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/accelnode/accelnode/internal/cpuinfo"
)

// CPU describes the processor.
type CPU struct {
	Model       string   `json:"model"`        // model name, or GOARCH where unknown
	Vendor      string   `json:"vendor"`       // CPUID vendor, such as "GenuineIntel"; "" where unavailable
	LogicalCPUs int      `json:"logical_cpus"` // runtime.NumCPU()
	Features    []string `json:"features"`     // vector features present, such as "avx2", "fma", "neon"
	VectorBits  int      `json:"vector_bits"`  // width of the vectors FMAKernel uses: 512, 256, or 32 for scalar
	FMAKernel   string   `json:"fma_kernel"`   // kernel MeasureFP32 uses: "avx512", "avx2" or "scalar"
}

// Detect describes the processor this process runs on.
func Detect() CPU {
	k := pick()
	return CPU{
		Model:       cpuinfo.Model(),
		Vendor:      vendor(),
		LogicalCPUs: runtime.NumCPU(),
		Features:    features(),
		VectorBits:  k.bits,
		FMAKernel:   k.name,
	}
}

// Peak is a measured FP32 throughput.
type Peak struct {
	FLOPS   float64 `json:"flops"`   // floating-point operations per second; an FMA counts 2
	Threads int     `json:"threads"` // goroutines, each on its own OS thread
	Kernel  string  `json:"kernel"`  // as in CPU.FMAKernel
	Seconds float64 `json:"seconds"` // wall time of the round FLOPS comes from
}

// Bandwidth is a measured memory bandwidth.
type Bandwidth struct {
	BytesPerSecond float64 `json:"bytes_per_second"` // bytes read plus bytes written, per second
	Threads        int     `json:"threads"`          // goroutines, each on its own OS thread
	Bytes          int64   `json:"bytes"`            // per thread: source plus destination buffer
	Seconds        float64 `json:"seconds"`          // wall time of the round BytesPerSecond comes from
}

// rounds is how many timed runs each measurement makes; it reports the
// best, since noise (other processes, interrupts) only ever slows a run.
const rounds = 3

// maxReps bounds calibration, against a timer too coarse to see a run.
const maxReps = 1 << 40

// fmaChunk is how many kernel iterations one assembly call does. Assembly
// cannot be preempted, so long runs are split to let the garbage collector
// and scheduler in between calls.
const fmaChunk = 1 << 15

// MeasureFP32 measures FP32 FMA throughput with the kernel Detect names on
// threads goroutines at once, each locked to its OS thread. It calibrates
// the work so that each timed round lasts about dur (200ms is a good
// choice), runs a few rounds, and reports the best. ctx is checked between
// runs; on cancellation MeasureFP32 returns ctx.Err().
func MeasureFP32(ctx context.Context, threads int, dur time.Duration) (Peak, error) {
	if err := checkArgs(threads, dur); err != nil {
		return Peak{}, fmt.Errorf("cpupeak: measure fp32: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Peak{}, err
	}
	k := pick()
	t := startTeam(threads, func() func(int64) {
		acc := make([]float32, k.accs*k.lanes)
		for i := range acc {
			acc[i] = 1
		}
		return func(n int64) {
			for n > 0 {
				c := min(n, fmaChunk)
				k.run(acc, int(c), k.x, k.y)
				n -= c
			}
		}
	})
	defer t.stop()
	iters, best, err := t.time(ctx, 1024, dur)
	if err != nil {
		return Peak{}, err
	}
	flops := float64(threads) * float64(iters) * float64(k.accs*k.lanes) * 2
	return Peak{
		FLOPS:   flops / best.Seconds(),
		Threads: threads,
		Kernel:  k.name,
		Seconds: best.Seconds(),
	}, nil
}

// MeasureBandwidth measures memory bandwidth by copying between two
// buffers on threads goroutines at once, each locked to its OS thread and
// with its own buffers of bytes in all (half source, half destination).
// bytes should be much larger than the last-level cache, 64 MiB say, or the
// result is the cache's bandwidth. It calibrates, runs and reports the best
// round like MeasureFP32, counting bytes read plus bytes written.
func MeasureBandwidth(ctx context.Context, threads int, bytes int64, dur time.Duration) (Bandwidth, error) {
	err := checkArgs(threads, dur)
	if err == nil && bytes < 2 {
		err = fmt.Errorf("buffer size must be at least 2 bytes, got %d", bytes)
	}
	if err == nil && bytes/2 > math.MaxInt {
		err = fmt.Errorf("buffer size %d is too large", bytes)
	}
	if err != nil {
		return Bandwidth{}, fmt.Errorf("cpupeak: measure bandwidth: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Bandwidth{}, err
	}
	half := int(bytes / 2)
	t := startTeam(threads, func() func(int64) {
		// Allocated and first touched on the worker's own thread, so the
		// pages are mapped (and NUMA-placed) before any timing starts.
		src, dst := make([]byte, half), make([]byte, half)
		for i := range src {
			src[i] = byte(i)
		}
		copy(dst, src)
		return func(n int64) {
			for range n {
				copy(dst, src)
			}
		}
	})
	defer t.stop()
	passes, best, err := t.time(ctx, 1, dur)
	if err != nil {
		return Bandwidth{}, err
	}
	moved := float64(threads) * float64(passes) * float64(2*half)
	return Bandwidth{
		BytesPerSecond: moved / best.Seconds(),
		Threads:        threads,
		Bytes:          int64(2 * half),
		Seconds:        best.Seconds(),
	}, nil
}

func checkArgs(threads int, dur time.Duration) error {
	if threads < 1 {
		return fmt.Errorf("threads must be at least 1, got %d", threads)
	}
	if dur <= 0 {
		return fmt.Errorf("duration must be positive, got %v", dur)
	}
	return nil
}

// team is a set of worker goroutines, each locked to its own OS thread so
// that the threads really run at once, which run the same work on command.
type team struct {
	start []chan int64 // per worker: how much work to do next
	done  chan struct{}
	wg    sync.WaitGroup
}

// startTeam starts threads workers, each of which calls setup once on its
// own thread for the work it runs, and returns once all are set up.
func startTeam(threads int, setup func() func(n int64)) *team {
	t := &team{start: make([]chan int64, threads), done: make(chan struct{}, threads)}
	for i := range t.start {
		// Buffered, so releasing a worker never waits on the previous
		// one waking up.
		t.start[i] = make(chan int64, 1)
		t.wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			work := setup()
			t.done <- struct{}{}
			for n := range t.start[i] {
				work(n)
				t.done <- struct{}{}
			}
		})
	}
	for range threads {
		<-t.done
	}
	return t
}

// run has every worker do n units of work and returns the wall time until
// the last one finished.
func (t *team) run(n int64) time.Duration {
	t0 := time.Now()
	for _, c := range t.start {
		c <- n
	}
	for range t.start {
		<-t.done
	}
	return max(time.Since(t0), 1)
}

// stop ends the workers and waits for them, freeing their threads.
func (t *team) stop() {
	for _, c := range t.start {
		close(c)
	}
	t.wg.Wait()
}

// time calibrates n, starting from first and doubling until a run takes a
// tenth of dur, then scaling it to dur; then it times rounds runs of n and
// returns n and the fastest.
func (t *team) time(ctx context.Context, first int64, dur time.Duration) (n int64, best time.Duration, err error) {
	n = first
	var d time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		d = t.run(n)
		if d >= dur/10 || n >= maxReps {
			break
		}
		n *= 2
	}
	n = int64(max(1, min(float64(n)*float64(dur)/float64(d), maxReps)))
	for range rounds {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if d := t.run(n); best == 0 || d < best {
			best = d
		}
	}
	return n, best, nil
}
