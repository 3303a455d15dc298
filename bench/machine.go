package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/bench/cpupeak"
)

// Figure is a peak with where it came from.
type Figure struct {
	Value float64 `json:"value"`
	// Source is "measured", "table" (a vendor datasheet) or "derived" (from
	// the driver's unit count and clock).
	Source string `json:"source"`
	Detail string `json:"detail,omitempty"`
}

// Machine describes the hardware a report was measured on.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"go_version"`
	CPU       CPU    `json:"cpu"`
	GPUs      []GPU  `json:"gpus,omitempty"`
	// Wasm describes the plain-WebAssembly baseline (backend "wasm"), and
	// WasmInterruptible the same code compiled as the node compiles every
	// guest (backend "wasm-interruptible"); absent from reports before
	// schema 2.
	Wasm              string `json:"wasm_baseline"`
	WasmInterruptible string `json:"wasm_interruptible_baseline,omitempty"`
}

// CPU is the processor and its measured roofs.
type CPU struct {
	cpupeak.CPU
	// PeakGFLOPS is FP32 on every logical CPU, an FMA counted as two.
	PeakGFLOPS Figure `json:"peak_gflops"`
	// PeakGBps is memory bandwidth: bytes read plus written, per second.
	PeakGBps Figure `json:"peak_gbps"`
}

// GPU is an accelerator a backend computes on, and its roofs.
type GPU struct {
	Backend string `json:"backend"`
	accel.Device
	PeakGFLOPS Figure `json:"peak_gflops"`
	PeakGBps   Figure `json:"peak_gbps"`
	// CopyGBps is the measured device-to-device copy, reported even where
	// the peak comes from the datasheet, as what kernels can reach.
	CopyGBps float64 `json:"copy_gbps,omitempty"`
}

// wasmBaseline and wasmInterruptibleBaseline say what the two
// plain-WebAssembly baselines are.
const (
	wasmBaseline              = "the reference kernels' portable Go loops compiled to WebAssembly (GOOS=wasip1), one thread, in wazero's compiler without loop interruption checks"
	wasmInterruptibleBaseline = "the same loops as accelnode run runs every guest: instrumented at load, so that a deadline can stop them and their instructions are metered (before 2026-12-05 wazero's check at every loop iteration, several times slower)"
)

// measureTime bounds the peak measurements: long enough to be stable, short
// enough for a quick sweep.
func measureTime(quick bool) time.Duration {
	if quick {
		return 30 * time.Millisecond
	}
	return 300 * time.Millisecond
}

// DescribeMachine detects the CPU and measures its roofs, and describes
// every available accelerator among backends with its roofs.
func DescribeMachine(ctx context.Context, backends []accel.Backend, quick bool) (Machine, error) {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version(),
		Wasm: wasmBaseline, WasmInterruptible: wasmInterruptibleBaseline}
	m.CPU.CPU = cpupeak.Detect()
	var err error
	if m.CPU.PeakGFLOPS, m.CPU.PeakGBps, err = measureCPURoofs(ctx, quick); err != nil {
		return m, err
	}

	for _, b := range backends {
		db, ok := b.(accel.DeviceBackend)
		if !ok || !b.Status().Available || slices.ContainsFunc(m.GPUs, func(g GPU) bool { return g.Backend == b.Name() }) {
			continue // a backend measured in two modes is one device
		}
		d, ok := db.Device()
		if !ok {
			continue
		}
		g := GPU{Backend: b.Name(), Device: d}
		copyBytes, reps := int64(1<<30), 10
		if quick {
			copyBytes, reps = 64<<20, 3
		}
		if c, err := db.CopyBandwidth(ctx, copyBytes, reps); err == nil {
			g.CopyGBps = c / 1e9
		} else if ctx.Err() != nil {
			return m, ctx.Err()
		}
		if part, ok := lookupGPU(d.Name); ok {
			g.PeakGFLOPS = Figure{Value: part.fp32TFLOPS * 1e3, Source: "table", Detail: part.name + " datasheet, FP32 without tensor cores"}
			g.PeakGBps = Figure{Value: part.bandwidthGBps, Source: "table", Detail: part.name + " datasheet"}
		} else {
			if f := derivedFP32(d); f > 0 {
				g.PeakGFLOPS = Figure{Value: f / 1e9, Source: "derived",
					Detail: fmt.Sprintf("%d SMs × %d lanes × 2 × %d MHz", d.ComputeUnits, fp32LanesPerSM(d.Arch), d.ClockMHz)}
			}
			if g.CopyGBps > 0 {
				g.PeakGBps = Figure{Value: g.CopyGBps, Source: "measured", Detail: fmt.Sprintf("device-to-device copy of %d MiB", copyBytes>>20)}
			}
		}
		m.GPUs = append(m.GPUs, g)
	}
	return m, nil
}

// measureCPURoofs measures the CPU's FP32 peak and memory bandwidth on as
// many threads as the backends may use.
func measureCPURoofs(ctx context.Context, quick bool) (flops, bw Figure, err error) {
	threads := runtime.GOMAXPROCS(0)
	peak, err := cpupeak.MeasureFP32(ctx, threads, measureTime(quick))
	if err != nil {
		return flops, bw, fmt.Errorf("measure the CPU's FP32 peak: %w", err)
	}
	flops = Figure{Value: peak.FLOPS / 1e9, Source: "measured",
		Detail: fmt.Sprintf("%s FMA throughput kernel on %d threads", peak.Kernel, peak.Threads)}
	// Per thread, source and destination together: well beyond any cache,
	// and no more than 4 GiB in all on a many-core host.
	bytes := int64(128 << 20)
	if quick {
		bytes = 64 << 20
	}
	bytes = max(16<<20, min(bytes, (4<<30)/int64(threads)))
	b, err := cpupeak.MeasureBandwidth(ctx, threads, bytes, measureTime(quick))
	if err != nil {
		return flops, bw, fmt.Errorf("measure the CPU's memory bandwidth: %w", err)
	}
	bw = Figure{Value: b.BytesPerSecond / 1e9, Source: "measured",
		Detail: fmt.Sprintf("copies of %d MiB on each of %d threads", bytes>>21, b.Threads)}
	return flops, bw, nil
}

// RemeasureCPU measures the CPU's roofs again and keeps the higher of each.
// On a shared machine a neighbour's load lowers a measured roof, and a roof
// measured low would put shares above 100 %; a sweep measures before and
// after it.
func (m *Machine) RemeasureCPU(ctx context.Context, quick bool) error {
	flops, bw, err := measureCPURoofs(ctx, quick)
	if err != nil {
		return err
	}
	for _, f := range []struct{ old, now *Figure }{{&m.CPU.PeakGFLOPS, &flops}, {&m.CPU.PeakGBps, &bw}} {
		best := max(f.old.Value, f.now.Value)
		f.old.Detail = fmt.Sprintf("%s; best of %.0f and %.0f, before and after the sweep", f.now.Detail, f.old.Value, f.now.Value)
		f.old.Value = best
	}
	return nil
}

// roof is the peak that a backend's results are shares of.
type roof struct {
	gflops, gbps float64
	device       string
}

func (m Machine) roofFor(backend string) roof {
	for _, g := range m.GPUs {
		if g.Backend == backend {
			return roof{g.PeakGFLOPS.Value, g.PeakGBps.Value, "gpu"}
		}
	}
	return roof{m.CPU.PeakGFLOPS.Value, m.CPU.PeakGBps.Value, "cpu"}
}
