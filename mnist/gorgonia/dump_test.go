package oracle

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/mnist"
)

var gradsFile = flag.String("grads", "", "gradient dump (tensors file) for TestGradientsMatchDump; a relative path is taken from mnist/gorgonia")

// TestGradientsMatchDump checks a gradient dump made elsewhere (by the
// guest) against gorgonia: go test -run TestGradientsMatchDump -grads FILE.
func TestGradientsMatchDump(t *testing.T) {
	if *gradsFile == "" {
		t.Skip("no gradient dump: run go test -run TestGradientsMatchDump -grads FILE, " +
			"FILE a tensors file holding the 8 parameters, grad.<name> for each, x [B,1,28,28], labels [B] and loss")
	}
	f, err := os.Open(*gradsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dump, err := mnist.ReadTensors(f)
	if err != nil {
		t.Fatalf("%s: %v", *gradsFile, err)
	}
	requireDumpMatches(t, dump)
}

// requireDumpMatches runs CheckDump, logs every measured error, and fails
// the test on any out of tolerance.
func requireDumpMatches(t *testing.T, dump []mnist.Tensor) {
	t.Helper()
	c, err := CheckDump(dump)
	if err != nil {
		t.Fatal(err)
	}
	logDumpCheck(t, c)
	for _, f := range c.Failures() {
		t.Error(f)
	}
}

func logDumpCheck(t *testing.T, c *DumpCheck) {
	t.Helper()
	t.Logf("batch %d; loss: dump %.8g, gorgonia %.8g, |diff| %.3g (limit %.3g)",
		c.Batch, c.Loss, c.OracleLoss, c.LossDiff(), LossRelTol*abs32(c.OracleLoss))
	for _, tc := range c.Tensors {
		t.Logf("grad.%-8s relative error %.3e (limit %.0e)  ||gorgonia|| %.6g", tc.Name, tc.RelErr, GradRelTol, tc.OracleNorm)
	}
	if len(c.Ignored) > 0 {
		t.Logf("ignored: %s", strings.Join(c.Ignored, ", "))
	}
}

func abs32(v float32) float64 {
	if v < 0 {
		return -float64(v)
	}
	return float64(v)
}

// referenceDump makes a dump the way the guest would, but from the plain-Go
// float64 forward and backward pass (rounded to float32), for a random
// network and batch. The float64 backward pass is itself checked against
// finite differences in TestGradientsFiniteDifferences.
func referenceDump(t *testing.T, seed uint64, B int) []mnist.Tensor {
	t.Helper()
	params := InitParams(seed)
	x, labels := randomBatch(seed+1, B)
	loss, grads := refGradients(toRef(params), f64s(x), labels)

	dump := append([]mnist.Tensor(nil), params...)
	for i, name := range ParamNames {
		g := make([]float32, len(grads[i]))
		for j, v := range grads[i] {
			g[j] = float32(v)
		}
		dump = append(dump, mnist.Tensor{Name: GradPrefix + name, Shape: ParamShapes[name], Data: g})
	}
	lf := make([]float32, B)
	for i, l := range labels {
		lf[i] = float32(l)
	}
	dump = append(dump,
		mnist.Tensor{Name: "x", Shape: []int{B, 1, Rows, Cols}, Data: x},
		mnist.Tensor{Name: "labels", Shape: []int{B}, Data: lf},
		mnist.Tensor{Name: "loss", Shape: []int{}, Data: []float32{float32(loss)}},
	)
	return dump
}

// writeDump writes a dump to a file in t.TempDir() and reads it back, the
// path a real dump takes.
func writeDump(t *testing.T, dump []mnist.Tensor) []mnist.Tensor {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grads.tensors")
	var buf bytes.Buffer
	if err := mnist.WriteTensors(&buf, dump); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := mnist.ReadTensors(f)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestDumpComparisonOnReferenceDump runs the comparison of
// TestGradientsMatchDump on a dump written from the float64 reference.
func TestDumpComparisonOnReferenceDump(t *testing.T) {
	requireDumpMatches(t, writeDump(t, referenceDump(t, 11, 2)))
}

// TestDumpComparisonCatchesErrors makes sure the comparison fails when it
// should: a gradient off by a little more than the tolerance, a wrong
// loss, and malformed dumps.
func TestDumpComparisonCatchesErrors(t *testing.T) {
	good := referenceDump(t, 12, 2)
	edit := func(name string, f func(*mnist.Tensor)) []mnist.Tensor {
		out := make([]mnist.Tensor, 0, len(good))
		for _, tn := range good {
			tn.Shape = append([]int(nil), tn.Shape...)
			tn.Data = append([]float32(nil), tn.Data...)
			if tn.Name == name {
				f(&tn)
			}
			out = append(out, tn)
		}
		return out
	}

	// 3× the tolerance on one gradient: only that tensor fails
	c, err := CheckDump(edit("grad.conv2.w", func(tn *mnist.Tensor) {
		for i := range tn.Data {
			tn.Data[i] *= 1 + 3*GradRelTol
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failures(); len(f) != 1 || !strings.HasPrefix(f[0], "grad.conv2.w:") {
		t.Errorf("scaled grad.conv2.w: failures %q, want just grad.conv2.w", f)
	}

	// one coordinate of a bias gradient wrong
	c, err = CheckDump(edit("grad.dense2.b", func(tn *mnist.Tensor) { tn.Data[3] += 0.01 }))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failures(); len(f) != 1 || !strings.HasPrefix(f[0], "grad.dense2.b:") {
		t.Errorf("changed grad.dense2.b[3]: failures %q, want just grad.dense2.b", f)
	}

	// loss off by 3× its tolerance, as a [1] tensor
	c, err = CheckDump(edit("loss", func(tn *mnist.Tensor) {
		tn.Shape = []int{1}
		tn.Data[0] *= 1 + 3*LossRelTol
	}))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failures(); len(f) != 1 || !strings.HasPrefix(f[0], "loss:") {
		t.Errorf("changed loss: failures %q, want just the loss", f)
	}

	// the labels decide the loss: another label fails loss and gradients
	c, err = CheckDump(edit("labels", func(tn *mnist.Tensor) { tn.Data[0] = float32((int(tn.Data[0]) + 1) % Classes) }))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failures(); len(f) < 2 {
		t.Errorf("changed label: failures %q, want the loss and gradients", f)
	}

	malformed := map[string][]mnist.Tensor{
		"label 2.5":            edit("labels", func(tn *mnist.Tensor) { tn.Data[0] = 2.5 }),
		"label 10":             edit("labels", func(tn *mnist.Tensor) { tn.Data[0] = 10 }),
		"loss of shape [2]":    edit("loss", func(tn *mnist.Tensor) { tn.Shape = []int{2}; tn.Data = append(tn.Data, 0) }),
		"gradient transposed":  edit("grad.dense2.w", func(tn *mnist.Tensor) { tn.Shape = []int{10, 128} }),
		"x of another batch":   edit("x", func(tn *mnist.Tensor) { tn.Shape[0] = 1; tn.Data = tn.Data[:Pixels] }),
		"parameter misshapen":  edit("conv1.w", func(tn *mnist.Tensor) { tn.Shape = []int{16, 25} }),
		"gradient missing":     edit("grad.conv1.b", func(tn *mnist.Tensor) { tn.Name = "grad.conv1.bias" }),
		"parameter missing":    edit("dense1.b", func(tn *mnist.Tensor) { tn.Name = "dense1.bias" }),
		"labels missing":       edit("labels", func(tn *mnist.Tensor) { tn.Name = "y" }),
		"loss missing":         edit("loss", func(tn *mnist.Tensor) { tn.Name = "cost" }),
		"data and shape apart": edit("grad.conv1.w", func(tn *mnist.Tensor) { tn.Data = tn.Data[1:] }),
	}
	for what, dump := range malformed {
		if _, err := CheckDump(dump); err == nil {
			t.Errorf("%s: CheckDump accepted it", what)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}
}
