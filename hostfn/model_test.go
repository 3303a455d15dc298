package hostfn_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

const modelGuest = "hostfn/testdata/guests/model"

// mlpWeights are the weights of the test MLP: Gemm (transB) → Relu → Gemm →
// Softmax, from x [batch,4] to y [batch,3] through 8 hidden units.
type mlpWeights struct{ w1, b1, w2, b2 []float32 }

func newMLPWeights() mlpWeights {
	r := rand.New(rand.NewPCG(5, 6))
	floats := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	return mlpWeights{w1: floats(8 * 4), b1: floats(8), w2: floats(8 * 3), b2: floats(3)}
}

func modelValue(name string, dims ...onnx.Dim) onnx.ValueInfo {
	return onnx.ValueInfo{Name: name, ElemType: onnx.Float, Dims: dims}
}

func modelInit(name string, data []float32, dims ...int64) onnx.Tensor {
	return onnx.Tensor{Name: name, Dims: dims, DataType: onnx.Float, Floats: data}
}

// onnx encodes the MLP, its weights as initializers and its batch symbolic.
func (w mlpWeights) onnx() []byte {
	batch := onnx.Dim{Param: "batch"}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		ProducerName: "hostfn_test",
		Graph: onnx.Graph{
			Name: "mlp",
			Nodes: []onnx.Node{
				{Name: "fc1", OpType: "Gemm", Inputs: []string{"x", "w1", "b1"}, Outputs: []string{"h"}, Attrs: []onnx.Attribute{onnx.IntAttr("transB", 1)}},
				{Name: "relu", OpType: "Relu", Inputs: []string{"h"}, Outputs: []string{"hr"}},
				{Name: "fc2", OpType: "Gemm", Inputs: []string{"hr", "w2", "b2"}, Outputs: []string{"logits"}},
				{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"y"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs:  []onnx.ValueInfo{modelValue("x", batch, onnx.Dim{Value: 4})},
			Outputs: []onnx.ValueInfo{modelValue("y", batch, onnx.Dim{Value: 3})},
			Initializers: []onnx.Tensor{
				modelInit("w1", w.w1, 8, 4),
				modelInit("b1", w.b1, 8),
				modelInit("w2", w.w2, 8, 3),
				modelInit("b2", w.b2, 3),
			},
		},
	})
}

// reference computes the MLP on x [batch,4] with an accel session's ops on
// ref, in strict mode.
func (w mlpWeights) reference(t testing.TB, x []float32, batch int) []float32 {
	t.Helper()
	ctx := context.Background()
	s, err := accel.NewSession(ref.New(0), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(x *accel.Tensor, err error) *accel.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	y := must(s.MatMul(ctx, must(s.FromFloat32(x, batch, 4)), must(s.FromFloat32(w.w1, 8, 4)), accel.MatMulParams{TransB: true}))
	y = must(s.AddBias(ctx, y, must(s.FromFloat32(w.b1, 8)), 1))
	y = must(s.Relu(ctx, y))
	y = must(s.MatMul(ctx, y, must(s.FromFloat32(w.w2, 8, 3)), accel.MatMulParams{}))
	y = must(s.AddBias(ctx, y, must(s.FromFloat32(w.b2, 3)), 1))
	y = must(s.Softmax(ctx, y))
	out, err := s.Float32(y)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unaryONNX is y = op(x) for x [batch,4], or for x of unknown rank.
func unaryONNX(op string, anyRank bool) []byte {
	in, out := modelValue("x", onnx.Dim{Param: "batch"}, onnx.Dim{Value: 4}), modelValue("y", onnx.Dim{Param: "batch"}, onnx.Dim{Value: 4})
	if anyRank {
		in.Dims, out.Dims = nil, nil
	}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name:    strings.ToLower(op),
			Nodes:   []onnx.Node{{Name: strings.ToLower(op), OpType: op, Inputs: []string{"x"}, Outputs: []string{"y"}}},
			Inputs:  []onnx.ValueInfo{in},
			Outputs: []onnx.ValueInfo{out},
		},
	})
}

// testModels registers "mlp", "softplus" (an op only ONNX Runtime runs) and
// "relu_any_rank" (an input of unknown rank).
func testModels(t testing.TB) (*models.Registry, mlpWeights) {
	t.Helper()
	w := newMLPWeights()
	reg := models.NewRegistry()
	for name, data := range map[string][]byte{
		"mlp":           w.onnx(),
		"softplus":      unaryONNX("Softplus", false),
		"relu_any_rank": unaryONNX("Relu", true),
	} {
		if _, err := reg.Add(name, data); err != nil {
			t.Fatal(err)
		}
	}
	return reg, w
}

// modelORT opens ONNX Runtime on the CPU, or fails: make deps fetches the
// library, so a missing one is a broken setup, not a reason to skip.
func modelORT(tb testing.TB) *ort.Backend {
	tb.Helper()
	b := ort.New(accel.Options{}, false)
	if st := b.Status(); !st.Available {
		tb.Fatalf("ort backend unavailable (run make deps): %s", st.Reason)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// modelGuestInput is the model guest's input: x[i] = float32(sin(i)).
func modelGuestInput(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

// modelOutput is what the model guest printed.
type modelOutput struct {
	rawInfo    string
	info       abi.ModelInfo
	described  []string // the "input ..." and "output ..." lines
	values     map[string][]float32
	shapes     map[string][]int
	cases      map[string]abi.Errno
	lastErrors map[string]string
	infoNeeded int
}

func parseModelOutput(t testing.TB, stdout string) modelOutput {
	t.Helper()
	o := modelOutput{values: map[string][]float32{}, shapes: map[string][]int{}, cases: map[string]abi.Errno{}, lastErrors: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		bad := func(err error) {
			t.Helper()
			t.Fatalf("unexpected guest line %q: %v", line, err)
		}
		switch {
		case len(f) == 0:
			bad(nil)
		case f[0] == "info_raw":
			o.rawInfo = strings.TrimPrefix(line, "info_raw ")
			if err := json.Unmarshal([]byte(o.rawInfo), &o.info); err != nil {
				bad(err)
			}
		case f[0] == "input" || f[0] == "output":
			o.described = append(o.described, line)
		case f[0] == "shape":
			for _, d := range f[2:] {
				n, err := strconv.Atoi(d)
				if err != nil {
					bad(err)
				}
				o.shapes[f[1]] = append(o.shapes[f[1]], n)
			}
		case f[0] == "case" && len(f) == 3:
			e, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				bad(err)
			}
			o.cases[f[1]] = abi.Errno(e)
		case f[0] == "last_error" && len(f) >= 2:
			o.lastErrors[f[1]] = strings.TrimPrefix(line, "last_error "+f[1]+" ")
		case f[0] == "info_needed" && len(f) == 2:
			n, err := strconv.Atoi(f[1])
			if err != nil {
				bad(err)
			}
			o.infoNeeded = n
		case len(f) == 3 && strings.HasPrefix(f[2], "0x"):
			i, err := strconv.Atoi(f[1])
			if err != nil || i != len(o.values[f[0]]) {
				bad(fmt.Errorf("element %q out of order: %w", f[1], err))
			}
			bits, err := strconv.ParseUint(f[2], 0, 32)
			if err != nil {
				bad(err)
			}
			o.values[f[0]] = append(o.values[f[0]], math.Float32frombits(uint32(bits)))
		default:
			bad(nil)
		}
	}
	return o
}

// checkModelInput checks that the guest used x[i] = float32(sin(i)), as the
// reference does.
func checkModelInput(t testing.TB, o modelOutput, batch int) []float32 {
	t.Helper()
	want := modelGuestInput(batch * 4)
	got := o.values["x"]
	if len(got) != len(want) {
		t.Fatalf("guest input has %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("guest input x[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	return want
}

func TestModelGuestRef(t *testing.T) {
	reg, w := testModels(t)
	for _, batch := range []int{1, 2, 7} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			stdout, stderr, _, err := run(t, modelGuest, engine.Invocation{Args: []string{"-model", "mlp", "-batch", fmt.Sprint(batch)}},
				hostfn.Config{Backend: ref.New(0), Mode: accel.Strict, Models: reg})
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			o := parseModelOutput(t, stdout)
			want := w.reference(t, checkModelInput(t, o, batch), batch)
			if got := o.shapes["y"]; !slices.Equal(got, []int{batch, 3}) {
				t.Errorf("output shape %v, want [%d 3]", got, batch)
			}
			got := o.values["y"]
			if len(got) != len(want) {
				t.Fatalf("guest printed %d output values, want %d", len(got), len(want))
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Errorf("y[%d] = %v (%#08x), reference %v (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		})
	}
}

// modelNear reports whether got is within tol of want relative to want's
// magnitude (absolutely near zero).
func modelNear(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1e-6)
}

// checkMLP checks a guest's MLP output against the reference within
// tolerance.
func checkMLP(t testing.TB, w mlpWeights, stdout string, batch int) {
	t.Helper()
	o := parseModelOutput(t, stdout)
	want := w.reference(t, checkModelInput(t, o, batch), batch)
	if got := o.shapes["y"]; !slices.Equal(got, []int{batch, 3}) {
		t.Errorf("output shape %v, want [%d 3]", got, batch)
	}
	got := o.values["y"]
	if len(got) != len(want) {
		t.Fatalf("guest printed %d output values, want %d", len(got), len(want))
	}
	for i := range want {
		if !modelNear(float64(got[i]), float64(want[i]), 1e-5) {
			t.Errorf("y[%d] = %v, reference %v", i, got[i], want[i])
		}
	}
}

// TestModelGuestORT runs the model on ONNX Runtime, in fast mode since ort
// does not implement the numerics contract.
func TestModelGuestORT(t *testing.T) {
	reg, w := testModels(t)
	ob := modelORT(t)
	for _, batch := range []int{1, 5, 64} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			stdout, stderr, _, err := run(t, modelGuest, engine.Invocation{Args: []string{"-model", "mlp", "-batch", fmt.Sprint(batch)}},
				hostfn.Config{Backend: ob, Mode: accel.Fast, Models: reg})
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			checkMLP(t, w, stdout, batch)
		})
	}
}

func TestModelInfo(t *testing.T) {
	reg, w := testModels(t)
	sum := sha256.Sum256(w.onnx())
	hash := hex.EncodeToString(sum[:])
	for _, key := range []string{"mlp", hash, "sha256:" + strings.ToUpper(hash)} {
		t.Run(key, func(t *testing.T) {
			stdout, stderr, _, err := run(t, modelGuest, engine.Invocation{Args: []string{"-model", key, "-batch", "1"}}, hostfn.Config{Models: reg})
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			o := parseModelOutput(t, stdout)
			want := abi.ModelInfo{
				Name: "mlp", SHA256: hash,
				Inputs:  []abi.ValueInfo{{Name: "x", DType: "f32", Shape: []int64{-1, 4}, Dims: []string{"batch", "4"}}},
				Outputs: []abi.ValueInfo{{Name: "y", DType: "f32", Shape: []int64{-1, 3}, Dims: []string{"batch", "3"}}},
			}
			if !equalModelInfo(o.info, want) {
				t.Errorf("model_info = %s\nwant %+v", o.rawInfo, want)
			}
			for _, frag := range []string{`"shape":[-1,4]`, `"dims":["batch","4"]`, `"shape":[-1,3]`, `"dims":["batch","3"]`, `"sha256":"` + hash + `"`} {
				if !strings.Contains(o.rawInfo, frag) {
					t.Errorf("model_info JSON lacks %s: %s", frag, o.rawInfo)
				}
			}
			// The binding parses the same.
			wantLines := []string{"input 0 x f32 [-1 4] [batch 4]", "output 0 y f32 [-1 3] [batch 3]"}
			if !slices.Equal(o.described, wantLines) {
				t.Errorf("the binding's Info:\n%s\nwant:\n%s", strings.Join(o.described, "\n"), strings.Join(wantLines, "\n"))
			}
		})
	}

	t.Run("unknown rank", func(t *testing.T) {
		stdout, stderr, _, err := run(t, modelGuest, engine.Invocation{Args: []string{"-model", "relu_any_rank", "-batch", "3"}}, hostfn.Config{Models: reg})
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		o := parseModelOutput(t, stdout)
		if !strings.Contains(o.rawInfo, `"inputs":[{"name":"x","dtype":"f32","shape":null,"dims":null}]`) {
			t.Errorf("model_info for an input of unknown rank: %s", o.rawInfo)
		}
		x := checkModelInput(t, o, 3)
		y := o.values["y"]
		if !slices.Equal(o.shapes["y"], []int{3, 4}) || len(y) != len(x) {
			t.Fatalf("relu of [3 4] gave shape %v, %d values", o.shapes["y"], len(y))
		}
		for i := range x {
			if want := max(x[i], 0); math.Float32bits(y[i]) != math.Float32bits(want) {
				t.Errorf("relu(%v) = %v", x[i], y[i])
			}
		}
	})
}

func equalModelInfo(a, b abi.ModelInfo) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// runCounted runs the model guest like run, but checks that the guest's
// tensors are all freed before the instance closes: the guest frees all it
// creates, so a tensor still live then was leaked by a call (Close frees
// everything, so run's own check cannot see such a leak).
func runCounted(t testing.TB, args []string, cfg hostfn.Config) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	in, err := hostfn.NewInstance(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Run(in.Bind(context.Background()), guestModule(t, node, modelGuest), engine.Invocation{Args: args, Stdout: &stdout, Stderr: &stderr})
	live, liveBytes := in.Session().LiveTensors(), in.Session().LiveBytes()
	in.Close()
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if live != 0 || liveBytes != 0 {
		t.Errorf("%d tensors (%d bytes) live when the guest ended, though it freed all it made", live, liveBytes)
	}
	return stdout.String()
}

func TestModelGuestErrors(t *testing.T) {
	reg, _ := testModels(t)
	want := map[string]abi.Errno{
		"unknown_model":               abi.ENOENT,
		"unknown_hash":                abi.ENOENT,
		"empty_name":                  abi.EINVAL,
		"long_name":                   abi.EINVAL,
		"open_by_hash":                abi.OK,
		"open_by_prefixed_upper_hash": abi.OK,
		"reopen_same_handle":          abi.OK,
		"open_name_out_of_bounds":     abi.EFAULT,
		"open_out_out_of_bounds":      abi.EFAULT,
		"info_buffer_too_small":       abi.ETOOSMALL,
		"info_buffer_out_of_bounds":   abi.EFAULT,
		"info_bad_model_handle":       abi.EBADHANDLE,
		"info_model_handle_zero":      abi.EBADHANDLE,
		"wrong_shape":                 abi.ESHAPE,
		"wrong_rank":                  abi.ESHAPE,
		"wrong_dtype":                 abi.EINVAL,
		"no_inputs":                   abi.EINVAL,
		"two_inputs":                  abi.EINVAL,
		"wrong_output_count":          abi.EINVAL,
		"no_outputs":                  abi.EINVAL,
		"freed_input":                 abi.EBADHANDLE,
		"zero_input_handle":           abi.EBADHANDLE,
		"run_bad_model_handle":        abi.EBADHANDLE,
		"run_inputs_out_of_bounds":    abi.EFAULT,
		"run_outputs_out_of_bounds":   abi.EFAULT,
		"unsupported_model":           abi.EUNSUPPORTED,
		"run_after_errors":            abi.OK,
	}
	// Readable sentences: each names the call and says what was wrong.
	wantText := map[string][]string{
		"unknown_model":             {"model_open", "no-such-model", "mlp, relu_any_rank, softplus"},
		"empty_name":                {"model_open", "0 bytes"},
		"long_name":                 {"model_open", "257 bytes"},
		"info_buffer_too_small":     {"model_info", "bytes needed"},
		"info_bad_model_handle":     {"model_info", "12345", "not open"},
		"wrong_shape":               {"model_run", "mlp", `"x"`, "[batchx4]"},
		"wrong_rank":                {"model_run", `"x"`, "[batchx4]"},
		"wrong_dtype":               {"model_run", `"x"`, "f32"},
		"wrong_output_count":        {"model_run", "1 inputs and gives 1 outputs", "passes 1 and 2"},
		"freed_input":               {"model_run", "not a live tensor"},
		"run_outputs_out_of_bounds": {"model_run", "output handles"},
		"unsupported_model":         {"model_run", "softplus", `"Softplus"`, "ref"},
	}
	for _, c := range []struct {
		name string
		cfg  hostfn.Config
	}{
		{"ref", hostfn.Config{Backend: ref.New(0), Mode: accel.Strict, Models: reg}},
		{"ort", hostfn.Config{Backend: modelORT(t), Mode: accel.Fast, Models: reg}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := parseModelOutput(t, runCounted(t, []string{"-model", "mlp", "-errors", "-unsupported", "softplus", "-batch", "2"}, c.cfg))
			for name, w := range want {
				if c.name == "ort" && name == "unsupported_model" {
					w = abi.OK // ONNX Runtime runs every op
				}
				g, ok := o.cases[name]
				switch {
				case !ok:
					t.Errorf("%s: not reported", name)
				case g != w:
					t.Errorf("%s: errno %d (%v), want %d (%v): %s", name, g, g, w, w, o.lastErrors[name])
				}
				if w != abi.OK && o.lastErrors[name] == "" {
					t.Errorf("%s: no last_error", name)
				}
			}
			if len(o.cases) != len(want) {
				t.Errorf("guest reported %d cases, the test knows %d", len(o.cases), len(want))
			}
			for name, frags := range wantText {
				if c.name == "ort" && name == "unsupported_model" {
					continue
				}
				for _, f := range frags {
					if !strings.Contains(o.lastErrors[name], f) {
						t.Errorf("%s: last_error %q lacks %q", name, o.lastErrors[name], f)
					}
				}
			}
			info := o.lastErrors["info_buffer_too_small"]
			if o.infoNeeded == 0 || !strings.Contains(info, fmt.Sprint(o.infoNeeded)) {
				t.Errorf("model_info into a short buffer wrote length %d: %s", o.infoNeeded, info)
			}
		})
	}
}

// TestModelConcurrentGuests runs two guests on one backend at once, each
// with its own Instance, running the same model; both must be correct.
func TestModelConcurrentGuests(t *testing.T) {
	reg, w := testModels(t)
	mod := guestModule(t, node, modelGuest)
	for _, c := range []struct {
		name    string
		backend accel.Backend
		mode    accel.Mode
	}{
		{"ort", modelORT(t), accel.Fast},
		{"ref", ref.New(0), accel.Strict},
	} {
		t.Run(c.name, func(t *testing.T) {
			batches := []int{3, 16}
			outs := make([]string, len(batches))
			errs := make([]error, len(batches))
			var wg sync.WaitGroup
			for i, batch := range batches {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var stdout, stderr bytes.Buffer
					_, err := hostfn.Run(context.Background(), node, mod, engine.Invocation{
						Args:   []string{"-model", "mlp", "-batch", fmt.Sprint(batch), "-reps", "20"},
						Stdout: &stdout, Stderr: &stderr,
					}, hostfn.Config{Backend: c.backend, Mode: c.mode, Models: reg})
					if err != nil {
						err = fmt.Errorf("%w\n%s", err, stderr.String())
					}
					outs[i], errs[i] = stdout.String(), err
				}()
			}
			wg.Wait()
			for i, batch := range batches {
				if errs[i] != nil {
					t.Fatalf("guest %d: %v", i, errs[i])
				}
				checkMLP(t, w, outs[i], batch)
			}
		})
	}
}
