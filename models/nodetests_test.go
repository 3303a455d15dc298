package models_test

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// The official ONNX backend node tests, as scripts/onnx-node-tests.sh
// writes them with the generators of Debian's python3-onnx (make test runs
// it): one folder per case, model.onnx and test_data_set_N with the inputs
// and the expected outputs as TensorProto files.
const nodeTestDir = "../.deps/onnx-node-tests/node"

// nodeTestTable is the record of every case's status on each backend, kept
// in the docs. TestONNXNodeTests fails where a status changes; run it with
// -update-node-tests to write the new record, and commit it with the
// change that made it.
const nodeTestTable = "../docs/onnx-node-tests.md"

var updateNodeTests = flag.Bool("update-node-tests", false, "rewrite "+nodeTestTable+" from this run")

// exporterOps are the ops PyTorch's ONNX exporter (opset 17) uses for
// standard vision and transformer networks. A case is run where every node
// of its graph is one of them.
var exporterOps = map[string]bool{}

func init() {
	for _, op := range strings.Fields(`
		MatMul Gemm
		Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Erf Tanh Sigmoid Relu LeakyRelu Clip
		HardSigmoid HardSwish Gelu Where Equal Less Greater Not
		Conv ConvTranspose MaxPool AveragePool GlobalAveragePool
		BatchNormalization LayerNormalization Softmax LogSoftmax
		ReduceMean ReduceSum ReduceMax
		Reshape Flatten Transpose Squeeze Unsqueeze Concat Split Slice Gather Expand Shape Constant
		ConstantOfShape Cast Identity Dropout`) {
		exporterOps[op] = true
	}
}

// Tolerances of the ONNX backend test runner (numpy's assert_allclose as
// onnx.backend.test.runner calls it): |got − want| ≤ atol + rtol·|want|.
const nodeTestRtol, nodeTestAtol = 1e-3, 1e-7

// nodeCase is one case's outcome on one backend.
type nodeCase struct {
	status string // pass, unsupported, wrong, error
	reason string // for all but pass
	out    [][]float32
}

func (c nodeCase) String() string {
	if c.status == "pass" {
		return "pass"
	}
	return c.status + ": " + c.reason
}

// TestONNXNodeTests runs every official node test case of the exporter's
// ops in strict mode on ref and ref-portable, and in fast mode on ort. On
// ref and ref-portable a case passes or is refused as unsupported, never
// computes a wrong value or fails otherwise, and the two give the same
// bits. Every status, with the reason where a case does not pass, must be
// the one docs/onnx-node-tests.md records.
func TestONNXNodeTests(t *testing.T) {
	entries, err := os.ReadDir(nodeTestDir)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("no ONNX node test cases in %s: scripts/onnx-node-tests.sh writes them (make test runs it; it needs python3-onnx)", nodeTestDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	backends := []struct {
		name string
		b    accel.Backend
		mode accel.Mode
	}{
		{"ref", ref.New(0), accel.Strict},
		{"ref-portable", ref.NewPortable(0), accel.Strict},
		{"ort", nil, accel.Fast},
	}
	if b := ort.New(accel.Options{}, false); b.Status().Available {
		backends[2].b = b
		t.Cleanup(func() { b.Close() })
	} else {
		t.Logf("ort is not run: %s", b.Status().Reason)
	}

	var rows [][]string
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(nodeTestDir, name)
		data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		om, err := onnx.Unmarshal(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ops, inScope := caseOps(om)
		if !inScope {
			continue
		}
		row := []string{name, ops}
		var results []nodeCase
		for _, be := range backends {
			if be.b == nil {
				row = append(row, "")
				results = append(results, nodeCase{})
				continue
			}
			r := runNodeCase(t, dir, data, be.b, be.mode)
			results = append(results, r)
			row = append(row, r.String())
			if be.name != "ort" && (r.status == "wrong" || r.status == "error") {
				t.Errorf("%s on %s: %s", name, be.name, r)
			}
		}
		if results[0].status == "pass" && results[1].status == "pass" {
			if i, ok := sameBits(results[0].out, results[1].out); !ok {
				t.Errorf("%s: output %d differs between ref and ref-portable: strict mode must give the same bits", name, i)
			}
		}
		rows = append(rows, row)
	}
	got := nodeTestMarkdown(rows)
	if *updateNodeTests {
		if err := os.WriteFile(nodeTestTable, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(nodeTestTable)
	if err != nil {
		t.Fatal(err)
	}
	if backends[2].b == nil {
		got = withColumnFrom(got, string(want), 4) // ort's, as recorded
	}
	if got != string(want) {
		t.Errorf("the node test statuses differ from %s; where the change is meant, rerun with -update-node-tests and commit it:\n%s", nodeTestTable, lineDiff(string(want), got))
	}
}

// caseOps lists the op types of a case's graph, and whether all are the
// exporter's.
func caseOps(om *onnx.Model) (string, bool) {
	var ops []string
	in := true
	for _, n := range om.Graph.Nodes {
		if !slices.Contains(ops, n.OpType) {
			ops = append(ops, n.OpType)
		}
		in = in && (n.Domain == "" || n.Domain == "ai.onnx") && exporterOps[n.OpType]
	}
	return strings.Join(ops, " "), in && len(ops) > 0
}

// runNodeCase runs every data set of one case on b.
func runNodeCase(t *testing.T, dir string, model []byte, b accel.Backend, mode accel.Mode) nodeCase {
	m, err := models.NewRegistry().Add("case", model)
	if err != nil {
		return failed(err)
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return nodeCase{status: "error", reason: "no test_data_set"}
	}
	var outs [][]float32
	for _, set := range sets {
		s, err := accel.NewSession(b, mode, accel.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := runDataSet(s, m, set)
		s.Close()
		if r.status != "pass" {
			return r
		}
		outs = append(outs, r.out...)
	}
	return nodeCase{status: "pass", out: outs}
}

// failed classifies an error: the node's refusals of what it does not
// implement are unsupported; anything else is an error.
func failed(err error) nodeCase {
	msg := strings.TrimPrefix(err.Error(), "model case: ")
	if errors.Is(err, accel.ErrUnsupported) {
		return nodeCase{status: "unsupported", reason: msg}
	}
	return nodeCase{status: "error", reason: msg}
}

func runDataSet(s *accel.Session, m *models.Model, set string) nodeCase {
	var inputs []*accel.Tensor
	for i, decl := range m.Inputs {
		if decl.ElemType == 0 {
			return nodeCase{status: "unsupported", reason: fmt.Sprintf("input %q is not a tensor (a sequence, a map or an optional)", decl.Name)}
		}
		pb, err := readTensor(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			return nodeCase{status: "error", reason: err.Error()}
		}
		var x *accel.Tensor
		shape := dimsOf(pb.Dims)
		switch {
		case slices.Contains(pb.Dims, 0):
			return nodeCase{status: "unsupported", reason: fmt.Sprintf("input %q is empty (dims %v): tensors have one element at least", decl.Name, pb.Dims)}
		case pb.DataType == onnx.Float:
			x, err = s.FromFloat32(pb.Floats, shape...)
		case pb.DataType == onnx.Int32:
			x, err = s.FromInt32(pb.Int32s, shape...)
		default:
			return nodeCase{status: "unsupported", reason: fmt.Sprintf("input %q has element type %s: tensors are f32 or i32", decl.Name, onnxTypeName(pb.DataType))}
		}
		if err != nil {
			return nodeCase{status: "error", reason: fmt.Sprintf("input %q: %v", decl.Name, err)}
		}
		inputs = append(inputs, x)
	}
	outs, err := m.Run(ctx, s, inputs)
	if err != nil {
		return failed(err)
	}
	var got [][]float32
	for i, o := range outs {
		want, err := readTensor(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
		if err != nil {
			return nodeCase{status: "error", reason: err.Error()}
		}
		if want.DataType != onnx.Float {
			return nodeCase{status: "error", reason: fmt.Sprintf("output %d is %s, but the run gave f32", i, onnxTypeName(want.DataType))}
		}
		if !slices.Equal(o.Shape(), dimsOf(want.Dims)) {
			return nodeCase{status: "wrong", reason: fmt.Sprintf("output %d has shape %v, want %v", i, o.Shape(), want.Dims)}
		}
		data := make([]byte, o.Bytes())
		if err := s.Read(o, 0, data); err != nil {
			return nodeCase{status: "error", reason: err.Error()}
		}
		g := accel.DecodeFloat32(data)
		if j, ok := allClose(g, want.Floats); !ok {
			return nodeCase{status: "wrong", reason: fmt.Sprintf("output %d, element %d: %v, want %v", i, j, g[j], want.Floats[j])}
		}
		got = append(got, g)
	}
	return nodeCase{status: "pass", out: got}
}

func readTensor(path string) (*onnx.Tensor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := onnx.UnmarshalTensor(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return t, nil
}

// dimsOf is the shape a run holds an ONNX tensor of dims in: a scalar is a
// [1] tensor.
func dimsOf(dims []int64) []int {
	if len(dims) == 0 {
		return []int{1}
	}
	out := make([]int, len(dims))
	for i, d := range dims {
		out[i] = int(d)
	}
	return out
}

// allClose is numpy's assert_allclose at the runner's tolerances: NaN
// matches NaN, an infinity only itself. It returns the first element that
// differs.
func allClose(got, want []float32) (int, bool) {
	if len(got) != len(want) {
		return 0, false
	}
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		switch {
		case math.IsNaN(w) || math.IsNaN(g):
			if math.IsNaN(w) != math.IsNaN(g) {
				return i, false
			}
		case math.IsInf(w, 0) || math.IsInf(g, 0):
			if g != w {
				return i, false
			}
		case math.Abs(g-w) > nodeTestAtol+nodeTestRtol*math.Abs(w):
			return i, false
		}
	}
	return 0, true
}

func sameBits(a, b [][]float32) (int, bool) {
	if len(a) != len(b) {
		return 0, false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return i, false
		}
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				return i, false
			}
		}
	}
	return 0, true
}

func onnxTypeName(t int) string {
	names := map[int]string{1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// nodeTestMarkdown writes the record: a summary per backend, then one row
// per case.
func nodeTestMarkdown(rows [][]string) string {
	var b strings.Builder
	b.WriteString(`# ONNX node tests

The official ONNX backend node tests (onnx 1.12, opsets up to 17) of the ops that PyTorch's ONNX
exporter uses for vision and transformer networks, run by ` + "`models`' `TestONNXNodeTests`" + `:
in strict mode on ` + "`ref` and `ref-portable`" + `, and whole on ONNX Runtime (` + "`ort`" + `, fast
mode). ` + "`scripts/onnx-node-tests.sh`" + ` writes the cases (` + "`make test`" + ` runs it). A case
passes where every output lies within the runner's tolerance of the expected one
(|got − want| ≤ 1e-7 + 1e-3·|want|); where ` + "`ref` and `ref-portable`" + ` pass, their bits are
the same. Unsupported cases say why. The test fails where a status here changes: this file is
written by ` + "`go test ./models -run TestONNXNodeTests -update-node-tests`" + `.

`)
	b.WriteString("| backend | cases | pass | unsupported | wrong | error |\n| --- | --- | --- | --- | --- | --- |\n")
	for col, name := range []string{"ref", "ref-portable", "ort"} {
		count := map[string]int{}
		for _, r := range rows {
			st, _, _ := strings.Cut(r[2+col], ":")
			count[st]++
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d |\n", name, len(rows), count["pass"], count["unsupported"], count["wrong"], count["error"])
	}
	b.WriteString("\n| case | ops | ref | ref-portable | ort |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// withColumnFrom gives got's case rows want's column col, and got's ort
// summary row want's, where ort could not run here.
func withColumnFrom(got, want string, col int) string {
	recorded := map[string]string{}
	for _, line := range strings.Split(want, "\n") {
		if cells := strings.Split(line, " | "); strings.HasPrefix(line, "| test_") && len(cells) > col {
			recorded[cells[0]] = cells[col]
		} else if strings.HasPrefix(line, "| ort | ") {
			recorded["ort"] = line
		}
	}
	lines := strings.Split(got, "\n")
	for i, line := range lines {
		cells := strings.Split(line, " | ")
		switch {
		case strings.HasPrefix(line, "| test_") && len(cells) > col:
			if v, ok := recorded[cells[0]]; ok {
				cells[col] = v
				lines[i] = strings.Join(cells, " | ")
			}
		case strings.HasPrefix(line, "| ort | ") && recorded["ort"] != "":
			lines[i] = recorded["ort"]
		}
	}
	return strings.Join(lines, "\n")
}

// lineDiff lists the lines of got that want lacks, and the reverse.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestNodeTestRecordWithoutORT: where ort cannot run, the record's ort
// column stands in for it, and only it.
func TestNodeTestRecordWithoutORT(t *testing.T) {
	want, err := os.ReadFile(nodeTestTable)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(want), "\n")
	for i, line := range lines {
		cells := strings.Split(line, " | ")
		switch {
		case strings.HasPrefix(line, "| test_"):
			cells[4] = " |"
			lines[i] = strings.Join(cells, " | ")
		case strings.HasPrefix(line, "| ort | "):
			lines[i] = "| ort | 0 | 0 | 0 | 0 | 0 |"
		}
	}
	blank := strings.Join(lines, "\n")
	if blank == string(want) {
		t.Fatal("blanking the ort column changed nothing")
	}
	if got := withColumnFrom(blank, string(want), 4); got != string(want) {
		t.Errorf("the ort column was not restored:\n%s", lineDiff(string(want), got))
	}
	if got := withColumnFrom(strings.Replace(blank, "| pass |", "| unsupported: x |", 1), string(want), 4); got == string(want) {
		t.Error("a change in ref's column was hidden")
	}
}
