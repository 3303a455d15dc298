package hostfn_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
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
// own timing of the multiplication alone.
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
				var gflops float64
				b.ResetTimer()
				for range b.N {
					var out strings.Builder
					inv.Stdout = &out
					if _, err := hostfn.Run(context.Background(), way.engine, m, inv, hostfn.Config{Backend: backend}); err != nil {
						b.Fatal(err)
					}
					gflops += metric(b, out.String(), way.line, "GFLOP/s")
				}
				b.ReportMetric(gflops/float64(b.N), "GFLOP/s")
			})
		}
	}
}
