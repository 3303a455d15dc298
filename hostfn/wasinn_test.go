package hostfn_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/models/onnx"
)

const nnGuest = "hostfn/testdata/guests/wasinn"

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// nnOutput is what the wasinn guest printed: values by "nn y" or "accel
// y" and index, as bits; units by call; and the other lines by key.
type nnOutput struct {
	values map[string][]uint32
	units  map[string]uint64
	cases  map[string]abi.NNErrno
	other  map[string][]string
}

func parseNN(t *testing.T, stdout string) nnOutput {
	t.Helper()
	o := nnOutput{values: map[string][]uint32{}, units: map[string]uint64{}, cases: map[string]abi.NNErrno{}, other: map[string][]string{}}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[1] == "y":
			bits, err := strconv.ParseUint(f[3], 0, 32)
			if err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			o.values[f[0]] = append(o.values[f[0]], uint32(bits))
		case len(f) == 3 && f[0] == "units":
			u, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			o.units[f[1]] = u
		case len(f) == 3 && f[0] == "case":
			e, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if _, dup := o.cases[f[1]]; dup {
				t.Fatalf("case %s printed twice", f[1])
			}
			o.cases[f[1]] = abi.NNErrno(e)
		case len(f) > 0:
			o.other[f[0]] = f[1:]
		}
	}
	return o
}

// runNN runs the wasinn guest with model on stdin, and checks afterwards
// that the guest's graphs released every nameless model.
func runNN(t *testing.T, model []byte, args []string, cfg hostfn.Config) nnOutput {
	t.Helper()
	if cfg.Models == nil {
		cfg.Models = models.NewRegistry()
	}
	stdout, stderr, _, err := run(t, nnGuest, engine.Invocation{Args: args, Stdin: bytes.NewReader(model)}, cfg)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if n := cfg.Models.Interned(); n != 0 {
		t.Errorf("%d nameless models still held after the guest ended", n)
	}
	return parseNN(t, stdout)
}

// TestWasiNNGoodPath runs the MLP through wasi-nn and through accel's
// model_run in one guest, at two batch sizes, and checks that they give the
// same bits, that those are the reference's, and that each wasi-nn call is
// charged what the accel calls doing the same work are. The guest's own
// instructions are metered too, the same at either batch size, so the
// charges are compared by how they grow from one batch to the other.
func TestWasiNNGoodPath(t *testing.T) {
	reg, w := testModels(t)
	mlp := w.onnx()
	// Other weights under no name: loaded from bytes, the graph is
	// interned, not a registered model.
	other := newMLPWeights()
	other.b2[0] += 1
	ortBackend := func(t *testing.T) accel.Backend { return modelORT(t) }
	tests := []struct {
		name    string
		model   []byte
		args    []string
		backend func(t *testing.T) accel.Backend
		mode    accel.Mode
		nn      func(t *testing.T) func(string) (accel.Backend, error)
	}{
		{name: "bytes", model: mlp},
		{name: "by name", args: []string{"-name", "mlp"}},
		{name: "by sha256", args: []string{"-name", "sha256:" + sha(mlp)}},
		{name: "by name with config", args: []string{"-name", "mlp", "-config"}},
		{name: "autodetect", model: mlp, args: []string{"-encoding", "5"}},
		{name: "target auto", model: mlp, args: []string{"-target", "3"}},
		{name: "single step", model: mlp, args: []string{"-single"}},
		{name: "nameless bytes", model: other.onnx(), args: []string{"-accel", ""}},
		{name: "ort", model: mlp, backend: ortBackend, mode: accel.Fast},
		{name: "ort by name", args: []string{"-name", "mlp"}, backend: ortBackend, mode: accel.Fast},
		{name: "cpu target served by ort beside ref", model: mlp, args: []string{"-accel", ""}, mode: accel.Fast,
			nn: func(t *testing.T) func(string) (accel.Backend, error) {
				ob := modelORT(t)
				return func(target string) (accel.Backend, error) {
					if target != hostfn.TargetCPU {
						return nil, fmt.Errorf("no %s backend", target)
					}
					return ob, nil
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hostfn.Config{Models: reg, Mode: tc.mode}
			if tc.backend != nil {
				cfg.Backend = tc.backend(t)
			}
			if tc.nn != nil {
				cfg.NNBackend = tc.nn(t)
			}
			weights, compare := w, !slices.Contains(tc.args, "-accel")
			if tc.name == "nameless bytes" {
				weights = other
			}
			var units [2]map[string]uint64
			for i, batch := range []int{2, 5} {
				o := runNN(t, tc.model, append(slices.Clone(tc.args), "-batch", fmt.Sprint(batch)), cfg)
				units[i] = o.units
				want := weights.reference(t, modelGuestInput(batch*4), batch)
				got := o.values["nn"]
				if len(got) != len(want) {
					t.Fatalf("batch %d: wasi-nn gave %d values, want %d", batch, len(got), len(want))
				}
				for i := range want {
					if v := math.Float32frombits(got[i]); !modelNear(float64(v), float64(want[i]), 1e-5) {
						t.Errorf("batch %d: y[%d] = %v, reference %v", batch, i, v, want[i])
					}
				}
				if compare && !slices.Equal(got, o.values["accel"]) {
					t.Errorf("batch %d: wasi-nn and model_run differ:\n%x\n%x", batch, got, o.values["accel"])
				}
			}
			growth := func(call string) int64 { return int64(units[1][call]) - int64(units[0][call]) }
			// set_input copies 4·4·3 more bytes in, twice (create and
			// write); get_output 4·3·3 more out.
			if g := growth("set_input"); g != 2*4*4*3 {
				t.Errorf("set_input grew by %d units from batch 2 to 5, want %d", g, 2*4*4*3)
			}
			if g := growth("get_output"); g != 4*3*3 {
				t.Errorf("get_output grew by %d units from batch 2 to 5, want %d", g, 4*3*3)
			}
			if g := growth("compute"); g <= 0 {
				t.Errorf("compute grew by %d units from batch 2 to 5", g)
			}
			if compare {
				for nn, acc := range map[string]string{"set_input": "accel_in", "compute": "model_run", "get_output": "accel_read"} {
					if growth(nn) != growth(acc) {
						t.Errorf("%s grew by %d units from batch 2 to 5, accel's %s by %d", nn, growth(nn), acc, growth(acc))
					}
				}
			}
		})
	}
}

// TestWasiNNTensorTypes passes i32 data to a graph with an INT32 input in
// the current numbering (4) and WasmEdge's (3), on ONNX Runtime, the
// backend that takes INT32 inputs.
func TestWasiNNTensorTypes(t *testing.T) {
	cast := modeltest.Unary("Cast", onnx.Int32, modeltest.Batch4, onnx.IntAttr("to", onnx.Float))
	for _, code := range []int{abi.NNTensorI32, abi.NNTensorI32Old} {
		t.Run(fmt.Sprint("type ", code), func(t *testing.T) {
			o := runNN(t, cast, []string{"-int", "-width", "4", "-type", fmt.Sprint(code), "-accel", "", "-batch", "3"},
				hostfn.Config{Backend: modelORT(t), Mode: accel.Fast})
			got := o.values["nn"]
			if len(got) != 12 {
				t.Fatalf("got %d values, want 12", len(got))
			}
			for i, bits := range got {
				if v := math.Float32frombits(bits); v != float32(i) {
					t.Errorf("y[%d] = %v, want %d", i, v, i)
				}
			}
		})
	}
}

// TestWasiNNErrors checks the errno of every wrong call of the wasinn
// guest against docs/abi.md, and that the guest leaves nothing behind.
func TestWasiNNErrors(t *testing.T) {
	const (
		ok  = abi.NNSuccess
		arg = abi.NNInvalidArgument
		enc = abi.NNInvalidEncoding
		uns = abi.NNUnsupportedOperation
		big = abi.NNTooLarge
		nf  = abi.NNNotFound
	)
	want := map[string]abi.NNErrno{
		"load_out_out_of_bounds":        arg,
		"load_array_out_of_bounds":      arg,
		"load_builder_lies":             arg,
		"load_builder_wraps":            arg,
		"load_array_longer_than_memory": arg,
		"load_no_builders":              arg,
		"load_two_builders":             arg,
		"load_openvino":                 enc,
		"load_ggml":                     enc,
		"load_unknown_encoding":         enc,
		"load_unknown_target":           arg,
		"load_tpu":                      uns,
		"load_gpu":                      uns,
		"load_not_onnx":                 enc,
		"load_autodetect_not_onnx":      enc,
		"load_autodetect":               ok,

		"load_by_name_unknown":                          nf,
		"load_by_name_empty":                            arg,
		"load_by_name_too_long":                         arg,
		"load_by_name_name_out_of_bounds":               arg,
		"load_by_name_out_out_of_bounds":                arg,
		"load_by_name_with_config_config_out_of_bounds": arg,
		"load_by_name_with_config_config_too_long":      arg,
		"load_by_name_with_config_unknown":              nf,
		"load_by_name_with_config":                      ok,
		"load_by_name":                                  ok,

		"init_unknown_graph":     arg,
		"init_out_out_of_bounds": arg,
		"init":                   ok,

		"compute_before_set_input":       arg,
		"get_output_before_compute":      arg,
		"set_input_unknown_context":      arg,
		"set_input_index_past_inputs":    arg,
		"set_input_tensor_out_of_bounds": arg,
		"set_input_dims_out_of_bounds":   arg,
		"set_input_data_out_of_bounds":   arg,
		"set_input_data_len_lies":        arg,
		"set_input_type_f16":             arg,
		"set_input_type_f64":             arg,
		"set_input_type_i64":             arg,
		"set_input_type_u8":              arg,
		"set_input_type_unknown":         arg,
		"set_input_i32_for_float":        arg,
		"set_input_old_i32_for_float":    arg,
		"set_input_wrong_shape":          arg,
		"set_input_wrong_rank":           arg,
		"set_input_data_short":           arg,
		"set_input_data_long":            arg,
		"set_input_zero_dimension":       arg,
		"set_input_rank_9":               arg,
		"set_input_size_overflow":        arg,
		"compute_still_before_set_input": arg,
		"set_input":                      ok,
		"set_input_again":                ok,

		"compute_unknown_context":              arg,
		"get_output_still_before_compute":      arg,
		"compute":                              ok,
		"get_output_index_past_outputs":        arg,
		"get_output_buffer_out_of_bounds":      arg,
		"get_output_buffer_longer_than_memory": arg,
		"get_output_written_out_of_bounds":     arg,
		"get_output_buffer_too_small":          big,
		"get_output_unknown_context":           arg,
		"get_output":                           ok,
		"fini_single_unknown_context":          arg,

		"init_second":              ok,
		"finalize":                 ok,
		"finalize_again":           arg,
		"set_input_after_finalize": arg,
		"unload":                   ok,
		"compute_after_unload":     arg,
		"get_output_after_unload":  arg,
		"set_input_after_unload":   arg,
		"init_after_unload":        arg,
		"unload_again":             arg,
		"unload_unknown":           arg,
		"unload_second":            ok,

		"load_past_graph_limit":            big,
		"load_bytes_past_graph_limit":      big,
		"unload_one":                       ok,
		"load_after_unload":                ok,
		"init_past_context_limit":          big,
		"unload_with_contexts":             ok,
		"init_after_unload_frees_contexts": ok,
	}
	reg, w := testModels(t)
	o := runNN(t, w.onnx(), []string{"-errors"}, hostfn.Config{Models: reg})
	for name, e := range want {
		got, ok := o.cases[name]
		switch {
		case !ok:
			t.Errorf("%s: not run", name)
		case got != e:
			t.Errorf("%s: errno %d (%v), want %d (%v)", name, got, got, e, e)
		}
	}
	for name := range o.cases {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: no expected errno", name)
		}
	}
	// The y of [2,3] f32 needs 24 bytes; load_autodetect's graph is live
	// when the graph limit is reached.
	for key, v := range map[string]string{"needed": "24", "graphs": fmt.Sprint(abi.NNMaxGraphs - 1), "contexts": fmt.Sprint(abi.NNMaxContexts)} {
		if got := o.other[key]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %v, want %s", key, got, v)
		}
	}
}

// TestWasiNNLoadLimit loads a model of 4 MiB and unloads it until the
// bytes a guest may load run out.
func TestWasiNNLoadLimit(t *testing.T) {
	w := newMLPWeights()
	m, err := onnx.Unmarshal(w.onnx())
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Initializers = append(m.Graph.Initializers, modelInit("pad", make([]float32, 1<<20), 1<<20))
	big := onnx.Marshal(m)
	o := runNN(t, big, []string{"-fill"}, hostfn.Config{})
	want := []string{fmt.Sprint(abi.NNMaxLoadBytes / len(big)), fmt.Sprint(uint32(abi.NNTooLarge))}
	if got := o.other["loads"]; !slices.Equal(got, want) {
		t.Errorf("loads = %v, want %v", got, want)
	}
}

// TestWasiNNTargets checks which targets a node without another backend
// serves, and that a target whose backend fails is refused.
func TestWasiNNTargets(t *testing.T) {
	w := newMLPWeights()
	tests := []struct {
		name   string
		target int
		nn     func(string) (accel.Backend, error)
		want   string // the guest's error, or "" for success
	}{
		{"cpu on ref", abi.NNTargetCPU, nil, ""},
		{"gpu on ref", abi.NNTargetGPU, nil, "load: errno 6"},
		{"gpu with no gpu backend", abi.NNTargetGPU, func(string) (accel.Backend, error) {
			return nil, errors.New("cuda unavailable")
		}, "load: errno 6: wasi_ephemeral_nn.load: target gpu: cuda unavailable"},
		{"gpu served by a second backend", abi.NNTargetGPU, func(string) (accel.Backend, error) {
			return ref.New(0), nil // another instance: a session of its own
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, _, err := run(t, nnGuest, engine.Invocation{Args: []string{"-accel", "", "-target", fmt.Sprint(tc.target)}, Stdin: bytes.NewReader(w.onnx())},
				hostfn.Config{Models: models.NewRegistry(), NNBackend: tc.nn})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			case tc.want != "" && (err == nil || !strings.Contains(stderr, tc.want)):
				t.Fatalf("err %v, stderr %q; want it to say %q", err, stderr, tc.want)
			}
		})
	}
}
