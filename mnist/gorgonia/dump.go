package oracle

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/accelnode/accelnode/mnist"
)

// Tolerances a gradient dump must meet against gorgonia.
const (
	// GradRelTol bounds ||g_dump − g_gorgonia||₂ / ||g_gorgonia||₂ for
	// every parameter's gradient.
	GradRelTol = 1e-4
	// LossRelTol bounds |loss_dump − loss_gorgonia| / |loss_gorgonia|.
	LossRelTol = 1e-5
)

// GradPrefix starts the name of a parameter's gradient in a dump.
const GradPrefix = "grad."

// TensorCheck is how one gradient of a dump compares with gorgonia's.
type TensorCheck struct {
	Name       string  // the parameter, e.g. "conv1.w"
	RelErr     float64 // ||g_dump − g_gorgonia||₂ / ||g_gorgonia||₂
	DumpNorm   float64 // ||g_dump||₂
	OracleNorm float64 // ||g_gorgonia||₂
}

// OK reports whether the gradient is within GradRelTol.
func (c TensorCheck) OK() bool { return c.RelErr <= GradRelTol }

// DumpCheck is the result of CheckDump.
type DumpCheck struct {
	Batch      int
	Loss       float32 // the dump's
	OracleLoss float32 // gorgonia's
	Tensors    []TensorCheck
	// Ignored names the dump's tensors that CheckDump did not use.
	Ignored []string
}

// LossDiff is |loss_dump − loss_gorgonia|.
func (c *DumpCheck) LossDiff() float64 {
	return math.Abs(float64(c.Loss) - float64(c.OracleLoss))
}

// LossOK reports whether the loss is within LossRelTol.
func (c *DumpCheck) LossOK() bool {
	return c.LossDiff() <= LossRelTol*math.Abs(float64(c.OracleLoss))
}

// Failures describes every way the dump is out of tolerance; empty when
// it matches.
func (c *DumpCheck) Failures() []string {
	var f []string
	if !c.LossOK() {
		f = append(f, fmt.Sprintf("loss: dump %.8g, gorgonia %.8g, |diff| %.3g > %.0e·|loss|",
			c.Loss, c.OracleLoss, c.LossDiff(), LossRelTol))
	}
	for _, t := range c.Tensors {
		if !t.OK() {
			f = append(f, fmt.Sprintf("%s%s: relative error %.3g > %.0e (||dump|| %.6g, ||gorgonia|| %.6g)",
				GradPrefix, t.Name, t.RelErr, GradRelTol, t.DumpNorm, t.OracleNorm))
		}
	}
	return f
}

// CheckDump recomputes a gradient dump with Gradients and compares it.
// The dump holds the eight parameters (ParamNames), their gradients named
// GradPrefix+name with the same shapes, "x" [B,1,28,28], "labels" [B]
// (integer class values stored as float32) and "loss" (rank 0 or [1]).
// Malformed dumps are an error; a dump that is well formed but out of
// tolerance is not: see the result's Failures.
func CheckDump(dump []mnist.Tensor) (*DumpCheck, error) {
	byName := make(map[string]mnist.Tensor, len(dump))
	for _, t := range dump {
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("oracle: dump holds %q twice", t.Name)
		}
		if len(t.Data) != numel(t.Shape) {
			return nil, fmt.Errorf("oracle: dump tensor %q has shape %v but %d values", t.Name, t.Shape, len(t.Data))
		}
		byName[t.Name] = t
	}
	get := func(name string) (mnist.Tensor, error) {
		t, ok := byName[name]
		if !ok {
			return t, fmt.Errorf("oracle: dump lacks %q", name)
		}
		delete(byName, name)
		return t, nil
	}

	params := make([]mnist.Tensor, 0, len(ParamNames))
	dumpGrads := make(map[string]mnist.Tensor, len(ParamNames))
	for _, name := range ParamNames {
		p, err := get(name)
		if err != nil {
			return nil, err
		}
		g, err := get(GradPrefix + name)
		if err != nil {
			return nil, err
		}
		if !sameShape(g.Shape, ParamShapes[name]) {
			return nil, fmt.Errorf("oracle: dump's %q has shape %v, want %v", g.Name, g.Shape, ParamShapes[name])
		}
		params = append(params, p)
		dumpGrads[name] = g
	}

	lt, err := get("labels")
	if err != nil {
		return nil, err
	}
	if len(lt.Shape) != 1 || lt.Shape[0] == 0 {
		return nil, fmt.Errorf("oracle: dump's labels have shape %v, want [B] with B ≥ 1", lt.Shape)
	}
	B := lt.Shape[0]
	labels := make([]int, B)
	for i, v := range lt.Data {
		if v != float32(math.Trunc(float64(v))) || v < 0 || v >= Classes {
			return nil, fmt.Errorf("oracle: dump's label %d is %v, not a class 0..%d", i, v, Classes-1)
		}
		labels[i] = int(v)
	}

	xt, err := get("x")
	if err != nil {
		return nil, err
	}
	if want := []int{B, 1, Rows, Cols}; !sameShape(xt.Shape, want) {
		return nil, fmt.Errorf("oracle: dump's x has shape %v, want %v", xt.Shape, want)
	}

	lossT, err := get("loss")
	if err != nil {
		return nil, err
	}
	if !(len(lossT.Shape) == 0 || (len(lossT.Shape) == 1 && lossT.Shape[0] == 1)) {
		return nil, fmt.Errorf("oracle: dump's loss has shape %v, want [] or [1]", lossT.Shape)
	}

	loss, grads, err := Gradients(params, xt.Data, labels)
	if err != nil {
		return nil, err
	}
	c := &DumpCheck{Batch: B, Loss: lossT.Data[0], OracleLoss: loss}
	for _, name := range ParamNames {
		d, o := dumpGrads[name].Data, grads[name]
		var diff, dn, on float64
		for i := range o {
			e := float64(d[i]) - float64(o[i])
			diff += e * e
			dn += float64(d[i]) * float64(d[i])
			on += float64(o[i]) * float64(o[i])
		}
		rel := math.Sqrt(diff) / math.Sqrt(on)
		switch {
		case on == 0 && diff == 0:
			rel = 0
		case on == 0:
			rel = math.Inf(1)
		} // a NaN in the dump leaves rel NaN, which is not OK
		c.Tensors = append(c.Tensors, TensorCheck{Name: name, RelErr: rel, DumpNorm: math.Sqrt(dn), OracleNorm: math.Sqrt(on)})
	}
	for name := range byName {
		c.Ignored = append(c.Ignored, name)
	}
	slices.Sort(c.Ignored)
	return c, nil
}

// String summarises the check, one line per tensor.
func (c *DumpCheck) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch %d, loss: dump %.8g, gorgonia %.8g, |diff| %.3g\n", c.Batch, c.Loss, c.OracleLoss, c.LossDiff())
	for _, t := range c.Tensors {
		fmt.Fprintf(&b, "%s%-8s rel err %.3e\n", GradPrefix, t.Name, t.RelErr)
	}
	return b.String()
}
