package hostfn_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/cuda"
	"github.com/accelnode/accelnode/accel/ort"
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

var (
	ortOnce    sync.Once
	ortBackend *ort.Backend
)

// ortServer is the ort backend on every core (ort.New(accel.Options{},
// false)), opened once for the test binary so that its ONNX Runtime
// sessions are created once; make deps fetches its library, so a missing
// one fails the benchmark rather than skipping it.
func ortServer(tb testing.TB) accel.Backend {
	tb.Helper()
	ortOnce.Do(func() { ortBackend = ort.New(accel.Options{}, false) })
	if st := ortBackend.Status(); !st.Available {
		tb.Fatalf("ort backend unavailable (run make deps): %s", st.Reason)
	}
	return ortBackend
}

// server is a backend the guest benchmarks run on, with the mode they use
// on it: ref in strict mode, or ort in fast mode (it does not implement the
// numerics contract).
type server struct {
	open func(testing.TB) accel.Backend
	mode accel.Mode
}

var (
	refServer = server{func(testing.TB) accel.Backend { return backend }, accel.Strict}
	onORT     = server{ortServer, accel.Fast}
)

func (s server) config(tb testing.TB) hostfn.Config {
	return hostfn.Config{Backend: s.open(tb), Mode: s.mode}
}

// uninterruptibleEngine is an engine without the deadline checks at every
// loop iteration: the fastest plain WebAssembly wazero runs.
func uninterruptibleEngine(b *testing.B) *engine.Engine {
	e, err := engine.New(context.Background(), engine.Config{HostModules: []engine.HostModule{hostfn.Module{}}, Uninterruptible: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// BenchmarkHostCall is the cost of one accel call from a guest: "units" is
// the cheapest call there is, "write" copies one element into a tensor, and
// "relu" is a one-element relu plus the free of its result (two calls), on
// ref and, as "relu-ort", on ort (one ONNX Runtime Run per relu). The guest
// times its own loop, so ns/call excludes instantiation; ns/op includes it,
// spread over b.N calls.
func BenchmarkHostCall(b *testing.B) {
	for _, c := range []struct {
		name, op string
		on       server
	}{
		{"units", "units", refServer},
		{"write", "write", refServer},
		{"relu", "relu", refServer},
		{"relu-ort", "relu", onORT},
	} {
		b.Run(c.name, func(b *testing.B) {
			guestModule(b, node, "hostfn/testdata/guests/callbench")
			cfg := c.on.config(b)
			// A first call creates the backend's state for the op (on ort,
			// its session).
			if _, stderr, _, err := run(b, "hostfn/testdata/guests/callbench",
				engine.Invocation{Args: []string{"-op", c.op, "-n", "1"}, SystemClock: true}, cfg); err != nil {
				b.Fatalf("%v\n%s", err, stderr)
			}
			b.ResetTimer()
			stdout, stderr, _, err := run(b, "hostfn/testdata/guests/callbench",
				engine.Invocation{Args: []string{"-op", c.op, "-n", fmt.Sprint(b.N)}, SystemClock: true}, cfg)
			if err != nil {
				b.Fatalf("%v\n%s", err, stderr)
			}
			b.ReportMetric(metric(b, stdout, "", "ns/call"), "ns/call")
		})
	}
}

// guestWay is one way a guest benchmark does its work: through the host
// function on a backend, or as plain WebAssembly in the node's engine or in
// one without deadline checks.
type guestWay struct {
	name, only string
	on         server // the host function's backend
	plain      bool
	engine     *engine.Engine
}

func guestWays(uninterruptible *engine.Engine) []guestWay {
	return []guestWay{
		{name: "host-ref", only: "host", on: refServer, engine: node},
		{name: "host-ort", only: "host", on: onORT, engine: node},
		{name: "plain", only: "plain", on: refServer, plain: true, engine: node},
		{name: "plain-uninterruptible", only: "plain", on: refServer, plain: true, engine: uninterruptible},
	}
}

// reps is the guest's repetitions for way: the host ways report the best
// of three (the first run creates the backend's state, on ort its session,
// and takes the first touch of the output's memory); a plain way's run takes
// seconds, and one is enough.
func (w guestWay) reps() string {
	if w.plain {
		return "1"
	}
	return "3"
}

// guestBench runs the guest module m b.N times with args and reports the
// mean of the figure in ms on its line starting with line, as guest-ms/op,
// and flops over it as GFLOP/s.
func guestBench(b *testing.B, way guestWay, m *engine.Module, args []string, line string, flops float64) {
	inv := engine.Invocation{Args: args, SystemClock: true}
	cfg := way.on.config(b)
	var ms float64
	b.ResetTimer()
	for range b.N {
		var out strings.Builder
		inv.Stdout = &out
		if _, err := hostfn.Run(context.Background(), way.engine, m, inv, cfg); err != nil {
			b.Fatal(err)
		}
		ms += metric(b, out.String(), line, "ms")
	}
	b.ReportMetric(flops/(ms/float64(b.N)*1e6), "GFLOP/s")
	b.ReportMetric(ms/float64(b.N), "guest-ms/op")
}

// BenchmarkGuestMatMul compares one n×n×n matmul done by a guest four
// ways: through the host function (upload, compute, download) on ref and on
// ort, as a plain WebAssembly loop in the node's engine (which checks the
// deadline at every loop iteration), and as the same loop in an engine
// without those checks, the fastest plain WebAssembly wazero runs. GFLOP/s
// is the guest's own timing of the multiplication alone (guest-ms/op; for
// the host ways the best of three in each run); ns/op adds the guest's start
// and its random inputs.
func BenchmarkGuestMatMul(b *testing.B) {
	uninterruptible := uninterruptibleEngine(b)
	for _, n := range []int{256, 512, 1024, 2048} {
		for _, way := range guestWays(uninterruptible) {
			if way.name == "plain" && n > 512 || way.name == "plain-uninterruptible" && n > 1024 {
				continue // minutes per run
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, way.name), func(b *testing.B) {
				m := guestModule(b, way.engine, "examples/matmul")
				line := "host function:"
				if way.plain {
					line = "plain wasm:"
				}
				guestBench(b, way, m, []string{"-n", fmt.Sprint(n), "-reps", way.reps(), "-only", way.only},
					line, 2*float64(n)*float64(n)*float64(n))
			})
		}
	}
}

// BenchmarkGuestConv2D compares one convolution layer done by a guest
// (hostfn/testdata/guests/convbench): an MNIST first layer (64×1×28×28, 32
// 3×3 filters) and a ResNet-50 3×3 layer (1×64×56×56, 64 filters), both with
// pad 1 and a bias, as accel/ref's BenchmarkConv2D. The ways are
// BenchmarkGuestMatMul's: through the host function (upload x, w and the
// bias, conv2d, read back) on ref and on ort, and the reference kernels
// compiled into the guest, on one thread, in the node's engine and in one
// without deadline checks.
func BenchmarkGuestConv2D(b *testing.B) {
	uninterruptible := uninterruptibleEngine(b)
	for _, layer := range []struct {
		name  string
		flops float64 // 2 per multiply-add: 2·N·OC·OH·OW·C·KH·KW
	}{
		{"mnist", 2 * 64 * 32 * 28 * 28 * 1 * 3 * 3},
		{"resnet", 2 * 1 * 64 * 56 * 56 * 64 * 3 * 3},
	} {
		for _, way := range guestWays(uninterruptible) {
			b.Run(layer.name+"/"+way.name, func(b *testing.B) {
				m := guestModule(b, way.engine, "hostfn/testdata/guests/convbench")
				guestBench(b, way, m, []string{"-layer", layer.name, "-reps", way.reps(), "-only", way.only},
					way.only+":", layer.flops)
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
	modeName := os.Getenv("ACCELNODE_DETERMINISM")
	if modeName == "" {
		modeName = "strict"
	}
	mode, err := accel.ParseMode(modeName)
	if err != nil {
		b.Fatal(err)
	}
	// The CUDA libraries, where the GPU machine's scripts name them.
	reg := accel.Open(accel.Options{Libraries: map[string]string{"cuda": os.Getenv("ACCELNODE_CUDA_PATH")}})
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
