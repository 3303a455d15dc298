package hostfn_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/cuda"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/internal/envconfig"
)

// metric finds the number before unit on the output line that starts with
// prefix, such as "12.3" in "  plain wasm:  80.1 ms  12.3 GFLOP/s".
func metric(tb testing.TB, output, prefix, unit string) float64 {
	tb.Helper()
	for _, line := range strings.Split(output, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), prefix) {
			continue
		}
		fields := strings.Fields(line)
		for i := 1; i < len(fields); i++ {
			if fields[i] == unit {
				v, err := strconv.ParseFloat(fields[i-1], 64)
				if err == nil {
					return v
				}
			}
		}
	}
	tb.Fatalf("no %q figure on a %q line of:\n%s", unit, prefix, output)
	return 0
}

// BenchmarkHostCall is the cost of one accel call from a guest: "units" is
// the cheapest call there is, "write" copies one element into a tensor, and
// "relu" is a one-element relu plus the free of its result (two calls). The
// guest times its own loop, so ns/call excludes instantiation; ns/op
// includes it, spread over b.N calls.
func BenchmarkHostCall(b *testing.B) {
	for _, op := range []string{"units", "write", "relu"} {
		b.Run(op, func(b *testing.B) {
			guestModule(b, node, "hostfn/testdata/guests/callbench")
			b.ResetTimer()
			stdout, stderr, _, err := run(b, "hostfn/testdata/guests/callbench",
				engine.Invocation{Args: []string{"-op", op, "-n", fmt.Sprint(b.N)}, SystemClock: true}, hostfn.Config{})
			if err != nil {
				b.Fatalf("%v\n%s", err, stderr)
			}
			b.ReportMetric(metric(b, stdout, "", "ns/call"), "ns/call")
		})
	}
}

// BenchmarkGuestMatMul compares one n×n×n matmul done by a guest three
// ways: through the host function (upload, compute on ref, download), as a
// plain WebAssembly loop in the node's engine (which checks the deadline at
// every loop iteration), and as the same loop in an engine without those
// checks, the fastest plain WebAssembly wazero runs. GFLOP/s is the guest's
// own timing of the multiplication alone (guest-ms/op); ns/op adds the
// guest's start and its random inputs.
func BenchmarkGuestMatMul(b *testing.B) {
	uninterruptible, err := engine.New(context.Background(), engine.Config{HostModules: []engine.HostModule{hostfn.Module{}}, Uninterruptible: true})
	if err != nil {
		b.Fatal(err)
	}
	defer uninterruptible.Close(context.Background())
	for _, n := range []int{256, 512, 1024} {
		for _, way := range []struct {
			name, only, line string
			engine           *engine.Engine
		}{
			{"host", "host", "host function:", node},
			{"plain", "plain", "plain wasm:", node},
			{"plain-uninterruptible", "plain", "plain wasm:", uninterruptible},
		} {
			if way.name == "plain" && n > 512 {
				continue // minutes per run
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, way.name), func(b *testing.B) {
				m := guestModule(b, way.engine, "examples/matmul")
				inv := engine.Invocation{Args: []string{"-n", fmt.Sprint(n), "-reps", "1", "-only", way.only}, SystemClock: true}
				var ms float64
				b.ResetTimer()
				for range b.N {
					var out strings.Builder
					inv.Stdout = &out
					if _, err := hostfn.Run(context.Background(), way.engine, m, inv, hostfn.Config{Backend: backend}); err != nil {
						b.Fatal(err)
					}
					ms += metric(b, out.String(), way.line, "ms")
				}
				flops := 2 * float64(n) * float64(n) * float64(n)
				b.ReportMetric(flops/(ms/float64(b.N)*1e6), "GFLOP/s")
				b.ReportMetric(ms/float64(b.N), "guest-ms/op")
			})
		}
	}
}

// unitsLoopWasm calls accel.units a million times, without a language
// runtime in the way:
//
//	(module
//	  (import "accel" "units" (func $units (param i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (func (export "_start") (local $i i32)
//	    (local.set $i (i32.const 1000000))
//	    (loop
//	      (drop (call $units (i32.const 0)))
//	      (br_if 0 (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))))
var unitsLoopWasm = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x09, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00, // types
	0x02, 0x0f, 0x01, 0x05, 'a', 'c', 'c', 'e', 'l', 0x05, 'u', 'n', 'i', 't', 's', 0x00, 0x00, // import
	0x03, 0x02, 0x01, 0x01, // function
	0x05, 0x03, 0x01, 0x00, 0x01, // memory
	0x07, 0x13, 0x02, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01, // exports
	0x0a, 0x1d, 0x01, 0x1b, 0x01, 0x01, 0x7f, // code: one body, one i32 local
	0x41, 0xc0, 0x84, 0x3d, 0x21, 0x00, // i = 1000000
	0x03, 0x40, 0x41, 0x00, 0x10, 0x00, 0x1a, // loop: drop(units(0))
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, // br_if 0 (i = i - 1)
	0x0b, 0x0b,
}

// BenchmarkHostCallRaw is the node's side of one host call: a loop in plain
// WebAssembly calling units, so no guest language runtime adds its own cost.
func BenchmarkHostCallRaw(b *testing.B) {
	m, err := node.Compile(context.Background(), unitsLoopWasm)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := hostfn.Run(context.Background(), node, m, engine.Invocation{}, hostfn.Config{Backend: backend}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/call")
}

// BenchmarkResidentMatMul is a guest's n×n matmul on tensors that stay on
// the backend, timed by the guest around the host call: the figure to set
// against the backend's own kernel time (accel/cuda's BenchmarkMatMul) to
// see what the host-call layer costs. ACCELNODE_BENCH_BACKEND and
// ACCELNODE_BENCH_SIZES choose the backend (default ref) and the sizes
// (default 256,512); the mode is strict unless ACCELNODE_DETERMINISM says
// fast.
func BenchmarkResidentMatMul(b *testing.B) {
	name := os.Getenv("ACCELNODE_BENCH_BACKEND")
	if name == "" {
		name = "ref"
	}
	mode, err := accel.ParseMode(envconfig.Determinism.Value())
	if err != nil {
		b.Fatal(err)
	}
	reg := accel.Open(accel.Options{Mode: mode})
	defer reg.Close()
	be, err := reg.Select(name, mode)
	if err != nil {
		b.Skip(err)
	}
	sizes := os.Getenv("ACCELNODE_BENCH_SIZES")
	if sizes == "" {
		sizes = "256,512"
	}
	for _, field := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(field)
		if err != nil {
			b.Fatalf("ACCELNODE_BENCH_SIZES: %v", err)
		}
		b.Run(fmt.Sprintf("%s/%s/n=%d", name, mode, n), func(b *testing.B) {
			m := guestModule(b, node, "hostfn/testdata/guests/resident")
			var ms float64
			for range b.N {
				var out strings.Builder
				inv := engine.Invocation{Args: []string{"-n", fmt.Sprint(n), "-reps", "10"}, Stdout: &out, SystemClock: true}
				if _, err := hostfn.Run(context.Background(), node, m, inv, hostfn.Config{Backend: be, Mode: mode}); err != nil {
					b.Fatal(err)
				}
				ms += metric(b, out.String(), "resident matmul:", "ms")
			}
			ms /= float64(b.N)
			b.ReportMetric(ms, "call-ms")
			b.ReportMetric(2*float64(n)*float64(n)*float64(n)/(ms*1e9), "TFLOP/s")
		})
	}
}
