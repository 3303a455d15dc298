package hostfn_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/internal/guesttest"
)

// node is the engine with the accel module that every test shares, so that
// each guest is compiled once per test binary.
var (
	node    *engine.Engine
	backend = ref.New(0)
)

func TestMain(m *testing.M) {
	ctx := context.Background()
	var err error
	node, err = engine.New(ctx, engine.Config{HostModules: []engine.HostModule{hostfn.Module{}, hostfn.NN{}}, CacheDir: guesttest.CacheDir()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	node.Close(ctx)
	os.Exit(code)
}

const module = "github.com/accelnode/accelnode/"

func guestModule(tb testing.TB, e *engine.Engine, pkg string) *engine.Module {
	tb.Helper()
	m, err := e.Compile(context.Background(), guesttest.Build(tb, module+pkg))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// run runs the guest at pkg on the shared node with args and returns its
// stdout, stderr, result and error. It also checks that the guest's
// tensors are all freed afterwards.
func run(t testing.TB, pkg string, inv engine.Invocation, cfg hostfn.Config) (string, string, engine.Result, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	inv.Stdout, inv.Stderr = &stdout, &stderr
	if cfg.Backend == nil {
		cfg.Backend = backend
	}
	in, err := hostfn.NewInstance(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := node.Run(in.Bind(context.Background()), guestModule(t, node, pkg), inv)
	in.Close()
	if n, b := in.Session().LiveTensors(), in.Session().LiveBytes(); n != 0 || b != 0 {
		t.Errorf("%s: %d tensors (%d bytes) still live after Close", pkg, n, b)
	}
	return stdout.String(), stderr.String(), res, err
}

func TestExamples(t *testing.T) {
	tests := []struct {
		pkg  string
		args []string
		mode accel.Mode
		want []string
	}{
		{"examples/matmul", []string{"-n", "64", "-reps", "1"}, accel.Strict, []string{"matmul 64x64x64 on ref (strict mode", "bit-identical to the plain loop (4096 values)"}},
		{"examples/matmul", []string{"-m", "1", "-k", "257", "-n", "3", "-reps", "1"}, accel.Fast, []string{"matmul 1x257x3 on ref (fast mode", "bit-identical"}},
		{"examples/cnn", []string{"-batch", "3"}, accel.Strict, []string{"batch 3, on ref (strict mode)", "image  2: class", "bit-identical to the in-guest pass (30 values)"}},
		{"examples/tsne", []string{"-n", "120", "-clusters", "3", "-iters", "60"}, accel.Strict, []string{"t-SNE of 120 points in 3 clusters", "iteration   50: KL", "bit-identical to the same run inside the guest (240 values)"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(append([]string{tc.pkg}, tc.args...), " "), func(t *testing.T) {
			stdout, stderr, _, err := run(t, tc.pkg, engine.Invocation{Args: tc.args, SystemClock: true}, hostfn.Config{Mode: tc.mode})
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestHostile checks the errno of every abusive call of the hostile guest
// against docs/abi.md, and that the node serves the next guest.
func TestHostile(t *testing.T) {
	want := map[string]abi.Errno{
		"create_shape_out_of_bounds":       abi.EFAULT,
		"create_shape_wraps_address_space": abi.EFAULT,
		"create_rank_0":                    abi.EINVAL,
		"create_rank_9":                    abi.EINVAL,
		"create_bad_dtype":                 abi.EINVAL,
		"create_zero_dimension":            abi.EINVAL,
		"create_size_overflow":             abi.EOVERFLOW,
		"create_out_out_of_bounds":         abi.EFAULT,
		"write_count_overflows":            abi.EOVERFLOW,
		"write_past_tensor":                abi.ESHAPE,
		"write_first_past_tensor":          abi.ESHAPE,
		"write_src_out_of_bounds":          abi.EFAULT,
		"read_dst_out_of_bounds":           abi.EFAULT,
		"info_out_of_bounds":               abi.EFAULT,
		"reshape_wrong_count":              abi.ESHAPE,
		"handle_zero":                      abi.EBADHANDLE,
		"handle_never_issued":              abi.EBADHANDLE,
		"handle_of_other_guest":            abi.EBADHANDLE,
		"matmul_shape_mismatch":            abi.ESHAPE,
		"matmul_bad_flags":                 abi.EINVAL,
		"matmul_out_out_of_bounds":         abi.EFAULT,
		"add_bias_axis_out_of_range":       abi.EINVAL,
		"conv2d_params_out_of_bounds":      abi.EFAULT,
		"maxpool2d_padding_too_large":      abi.EINVAL,
		// Window parameters beyond any dimension are invalid, as
		// docs/abi.md says, not an overflow.
		"conv2d_stride_0x20000000":    abi.EINVAL,
		"conv2d_stride_0xffffffff":    abi.EINVAL,
		"maxpool2d_stride_0x20000000": abi.EINVAL,
		"maxpool2d_stride_0xffffffff": abi.EINVAL,
		"add_shape_mismatch":          abi.ESHAPE,
		"add_out_out_of_bounds":       abi.EFAULT,
		"add_sum":                     abi.OK,
		"tsne_column_out_of_range":    abi.EINVAL,
		"tsne_repeated_tensor":        abi.EINVAL,
		"tsne_kl_out_of_bounds":       abi.EFAULT,
		"info_buffer_too_small":       abi.ETOOSMALL,
		"info_buffer_out_of_bounds":   abi.EFAULT,
		"info_length_after_fault":     777, // not an errno: the untouched length
		"units_out_of_bounds":         abi.EFAULT,
		"free_twice_first":            abi.OK,
		"free_twice_second":           abi.EBADHANDLE,
		"use_after_free":              abi.EBADHANDLE,
	}
	stdout, stderr, _, err := run(t, "hostfn/testdata/guests/hostile", engine.Invocation{}, hostfn.Config{})
	if err != nil {
		t.Fatalf("hostile guest: %v\n%s", err, stderr)
	}
	got := map[string]abi.Errno{}
	var lastError string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var name string
		var e uint32
		if strings.HasPrefix(sc.Text(), "last_error ") {
			lastError = sc.Text()
			continue
		}
		if _, err := fmt.Sscan(sc.Text(), &name, &e); err != nil {
			t.Fatalf("unexpected line %q", sc.Text())
		}
		got[name] = abi.Errno(e)
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: not reported", name)
		} else if g != w {
			t.Errorf("%s: errno %d (%v), want %d (%v)", name, g, g, w, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("guest reported %d cases, the test knows %d", len(got), len(want))
	}
	if !strings.Contains(lastError, "tensor_read") || !strings.Contains(lastError, "not a live tensor") {
		t.Errorf("last_error after use-after-free = %s", lastError)
	}
	healthy(t)
}

// healthy checks that the node still serves a well-behaved guest.
func healthy(t *testing.T) {
	t.Helper()
	stdout, _, _, err := run(t, "examples/matmul", engine.Invocation{Args: []string{"-n", "16", "-reps", "1"}}, hostfn.Config{})
	if err != nil || !strings.Contains(stdout, "bit-identical") {
		t.Fatalf("healthy guest afterwards: %v\n%s", err, stdout)
	}
}

// TestForeignHandle runs a guest that holds a tensor and, while it holds
// it, a second guest that tries the first one's handle number. The number
// must name nothing in the second guest, and the holder's tensor must be
// intact afterwards.
func TestForeignHandle(t *testing.T) {
	holder := guestModule(t, node, "hostfn/testdata/guests/holder")
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	in, err := hostfn.NewInstance(hostfn.Config{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	done := make(chan error, 1)
	go func() {
		_, err := node.Run(in.Bind(context.Background()), holder, engine.Invocation{Stdin: stdinR, Stdout: outW})
		outW.Close()
		done <- err
	}()
	out := bufio.NewReader(outR)
	handle, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("holder printed no handle: %v", err)
	}
	stdout, _, _, err := run(t, "hostfn/testdata/guests/hostile", engine.Invocation{Args: []string{strings.TrimSpace(handle)}}, hostfn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("foreign_info %d\nforeign_free %d\n", abi.EBADHANDLE, abi.EBADHANDLE)
	if stdout != want {
		t.Errorf("second guest using handle %s:\n%s\nwant:\n%s", handle, stdout, want)
	}
	stdinW.Close()
	rest, _ := io.ReadAll(out)
	if err := <-done; err != nil {
		t.Fatalf("holder: %v", err)
	}
	if got := string(rest); got != "[1 2 3 4] <nil>\n" {
		t.Errorf("holder's tensor afterwards: %q", got)
	}
}

func TestBudget(t *testing.T) {
	const budget = 5_000_000
	stdout, _, res, err := run(t, "hostfn/testdata/guests/budget", engine.Invocation{Budget: budget}, hostfn.Config{})
	if !errors.Is(err, engine.ErrBudgetExhausted) {
		t.Fatalf("error = %v, want the budget exhausted", err)
	}
	// One 64x64 matmul costs accel.MatMulUnits(64, 64, 64); the guest first
	// pays for its input tensor.
	perMatMul := accel.MatMulUnits(64, 64, 64) + accel.CallUnits // and the free of its result
	setup := uint64(accel.CallUnits + 64*64*4)
	wantCount := (budget - setup) / perMatMul
	if (budget-setup)%perMatMul >= accel.MatMulUnits(64, 64, 64) {
		wantCount++
	}
	// The guest's own instructions share the budget: they cost less than
	// a matmul here, so at most one matmul fewer fits, and the refused one
	// is the first that would have gone over.
	var count, used uint64
	if _, err := fmt.Sscanf(stdout[strings.Index(stdout, "refused after"):], "refused after %d matmuls: accel matmul: compute budget exhausted: "+fmt.Sprint(accel.MatMulUnits(64, 64, 64))+" units asked for with %d of", &count, &used); err != nil {
		t.Fatalf("guest output %q: %v", stdout, err)
	}
	if count > wantCount || count+1 < wantCount || used > budget || used+accel.MatMulUnits(64, 64, 64) <= budget || res.GuestUnits == 0 {
		t.Errorf("refused after %d matmuls with %d units used (%d the guest's own), want %d matmuls with the next over %d", count, used, res.GuestUnits, wantCount, budget)
	}
	if !strings.Contains(stdout, "then free: accel tensor_free: compute budget exhausted") {
		t.Errorf("a cheap call after the refusal was not refused: %q", stdout)
	}
	if res.UnitsUsed > budget || res.UnitsUsed < budget-perMatMul {
		t.Errorf("used %d units of %d", res.UnitsUsed, budget)
	}
	healthy(t)
}

// TestDeadlineStopsHostCall checks that a deadline interrupts a long host
// operation, not only guest code.
func TestDeadlineStopsHostCall(t *testing.T) {
	start := time.Now()
	_, _, _, err := run(t, "hostfn/testdata/guests/longop", engine.Invocation{Timeout: 300 * time.Millisecond}, hostfn.Config{})
	if !errors.Is(err, engine.ErrDeadline) {
		t.Fatalf("error = %v, want the deadline", err)
	}
	// A 4096³ matmul takes tens of seconds on ref; stopping must not wait
	// for it.
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("stopped after %v", elapsed)
	}
	healthy(t)
}

func TestTensorMemoryLimit(t *testing.T) {
	stdout, _, _, err := run(t, "hostfn/testdata/guests/longop", engine.Invocation{}, hostfn.Config{Limits: accel.Limits{MaxBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "out of tensor memory") {
		t.Errorf("guest output %q, want out of tensor memory", stdout)
	}
}

// TestNoInstance runs a guest on an engine call without a bound Instance:
// every accel call is refused, nothing breaks.
func TestNoInstance(t *testing.T) {
	var stdout bytes.Buffer
	_, err := node.Run(context.Background(), guestModule(t, node, "hostfn/testdata/guests/holder"), engine.Invocation{Stdout: &stdout})
	var exit *engine.ExitError
	if !errors.As(err, &exit) || !strings.Contains(stdout.String(), "unsupported") {
		t.Fatalf("error = %v, output %q; want exit 1 after an unsupported errno", err, stdout.String())
	}
}

// noMemoryWasm has no memory at all, calls tensor_create and exits with
// the errno it got:
//
//	(module
//	  (import "accel" "tensor_create" (func $create (param i32 i32 i32 i32) (result i32)))
//	  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
//	  (func (export "_start") (call $exit (call $create (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))))
var noMemoryWasm = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x10, 0x03, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00,
	0x02, 0x3a, 0x02,
	0x05, 'a', 'c', 'c', 'e', 'l', 0x0d, 't', 'e', 'n', 's', 'o', 'r', '_', 'c', 'r', 'e', 'a', 't', 'e', 0x00, 0x00,
	0x16, 'w', 'a', 's', 'i', '_', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', '_', 'p', 'r', 'e', 'v', 'i', 'e', 'w', '1',
	0x09, 'p', 'r', 'o', 'c', '_', 'e', 'x', 'i', 't', 0x00, 0x01,
	0x03, 0x02, 0x01, 0x02,
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x02,
	0x0a, 0x10, 0x01, 0x0e, 0x00,
	0x41, 0x01, 0x41, 0x00, 0x41, 0x00, 0x41, 0x00, 0x10, 0x00, // tensor_create(1, 0, 0, 0)
	0x10, 0x01, 0x0b, // proc_exit, end
}

// TestNoMemory checks that a guest without memory that calls the host gets
// EFAULT, where wazero's nil memory once made the host panic (EINTERNAL).
func TestNoMemory(t *testing.T) {
	m, err := node.Compile(context.Background(), noMemoryWasm)
	if err != nil {
		t.Fatal(err)
	}
	in, err := hostfn.NewInstance(hostfn.Config{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_, err = node.Run(in.Bind(context.Background()), m, engine.Invocation{})
	var exit *engine.ExitError
	if !errors.As(err, &exit) || abi.Errno(exit.Code) != abi.EFAULT {
		t.Fatalf("error %v, want an exit with EFAULT (%d)", err, abi.EFAULT)
	}
}

// TestMetering checks that charges depend on shapes alone: two runs of
// the same guest use the same units.
func TestMetering(t *testing.T) {
	inv := engine.Invocation{Args: []string{"-batch", "2"}}
	_, _, first, err := run(t, "examples/cnn", inv, hostfn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, second, err := run(t, "examples/cnn", inv, hostfn.Config{Backend: ref.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	if first.UnitsUsed == 0 || first.UnitsUsed != second.UnitsUsed {
		t.Errorf("units used: %d, then %d", first.UnitsUsed, second.UnitsUsed)
	}
}

// TestConcurrentGuests runs guests at once; each must get its own answer.
func TestConcurrentGuests(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := fmt.Sprint(16 + i)
			stdout, _, _, err := run(t, "examples/matmul", engine.Invocation{Args: []string{"-n", n, "-reps", "1", "-seed", n}}, hostfn.Config{})
			if err != nil || !strings.Contains(stdout, "matmul "+n+"x"+n+"x"+n) || !strings.Contains(stdout, "bit-identical") {
				t.Errorf("guest %d: %v\n%s", i, err, stdout)
			}
		}()
	}
	wg.Wait()
}
