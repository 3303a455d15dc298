package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models"
)

// modelTolerance bounds how far a backend's output may lie from the
// reference output beside a model: max|got − want| / max|want|.
const modelTolerance = 1e-4

// modelRun is one model on one backend in one mode.
type modelRun struct {
	model, backend string
	mode           accel.Mode
	elapsed        time.Duration
	relErr         float64
	outputs        [][]float32
	err            error
	sameBits       string // for strict runs: "same bits" or what differs
}

// modelsConformance runs every model of dir that has reference outputs
// beside it (NAME.onnx with NAME.io.ant, as scripts/export-torch-models.sh
// writes them) on each backend: in strict mode where the backend serves
// it, where every strict run must give the same bits, and in fast mode
// where it serves that; every run must lie within modelTolerance of the
// reference. It writes a table and returns the failures.
func modelsConformance(ctx context.Context, dir string, backends []accel.Backend, stdout io.Writer) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.onnx"))
	if err != nil {
		return nil, err
	}
	var runs []modelRun
	modelsRun := 0
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".onnx")
		io := strings.TrimSuffix(path, ".onnx") + ".io.ant"
		if _, err := os.Stat(io); err != nil {
			continue // a model without reference outputs
		}
		m, err := models.NewRegistry().LoadFile(name, path)
		if err != nil {
			return nil, err
		}
		inputs, want, err := modelIO(m, io)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		modelsRun++
		for _, b := range backends {
			st := b.Status()
			for _, mode := range []accel.Mode{accel.Strict, accel.Fast} {
				if !st.Serves(mode) || mode == accel.Fast && st.FastIsStrict {
					continue // fast mode from the strict kernels: the strict run covers it
				}
				r := runModel(ctx, m, b, mode, inputs)
				r.model = name
				if r.err == nil {
					r.relErr = relativeError(r.outputs, want)
				}
				runs = append(runs, r)
			}
		}
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("--models: no NAME.onnx with NAME.io.ant in %s", dir)
	}
	var failures []string
	first := map[string]*modelRun{} // each model's first strict run
	for i := range runs {
		r := &runs[i]
		switch {
		case r.err != nil:
			failures = append(failures, fmt.Sprintf("%s on %s (%s): %v", r.model, r.backend, r.mode, r.err))
			continue
		case !(r.relErr <= modelTolerance):
			failures = append(failures, fmt.Sprintf("%s on %s (%s): %.3g from the reference, over %g", r.model, r.backend, r.mode, r.relErr, modelTolerance))
		}
		if r.mode != accel.Strict {
			continue
		}
		f := first[r.model]
		if f == nil {
			first[r.model], r.sameBits = r, "reference"
			continue
		}
		if o, i, ok := sameBits(f.outputs, r.outputs); !ok {
			r.sameBits = fmt.Sprintf("differs from %s at output %d, element %d", f.backend, o, i)
			failures = append(failures, fmt.Sprintf("%s on %s (strict): %s", r.model, r.backend, r.sameBits))
		} else {
			r.sameBits = "same bits as " + f.backend
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MODEL\tBACKEND\tMODE\tTIME\tFROM REFERENCE\tSTRICT BITS")
	for _, r := range runs {
		if r.err != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t-\terror: %v\t\n", r.model, r.backend, r.mode, r.err)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%.3g\t%s\n", r.model, r.backend, r.mode, r.elapsed.Round(time.Millisecond), r.relErr, r.sameBits)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	for _, b := range backends {
		if st := b.Status(); !st.Available {
			fmt.Fprintf(stdout, "%s: skipped: %s\n", b.Name(), st.Reason)
		}
	}
	fmt.Fprintf(stdout, "%d runs of %d models, %d failures (within %g of the reference outputs; strict runs bit for bit)\n",
		len(runs), modelsRun, len(failures), modelTolerance)
	return failures, nil
}

// modelIO reads a model's inputs and reference outputs from an ANT1
// tensors file: a tensor named for each of the model's inputs and outputs.
func modelIO(m *models.Model, path string) (inputs, outputs []mnist.Tensor, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	ts, err := mnist.ReadTensors(f)
	if err != nil {
		return nil, nil, err
	}
	find := func(name string) (mnist.Tensor, error) {
		for _, t := range ts {
			if t.Name == name {
				return t, nil
			}
		}
		return mnist.Tensor{}, fmt.Errorf("%s holds no tensor %q", filepath.Base(path), name)
	}
	for _, v := range m.Inputs {
		t, err := find(v.Name)
		if err != nil {
			return nil, nil, err
		}
		inputs = append(inputs, t)
	}
	for _, v := range m.Outputs {
		t, err := find(v.Name)
		if err != nil {
			return nil, nil, err
		}
		outputs = append(outputs, t)
	}
	return inputs, outputs, nil
}

// runModel runs m once on a fresh session of b in mode (after a first run
// that is not timed, which compiles) and reads its outputs.
func runModel(ctx context.Context, m *models.Model, b accel.Backend, mode accel.Mode, inputs []mnist.Tensor) modelRun {
	r := modelRun{backend: b.Name(), mode: mode}
	s, err := accel.NewSession(b, mode, accel.Limits{}, nil)
	if err != nil {
		r.err = err
		return r
	}
	defer s.Close()
	var in []*accel.Tensor
	for _, t := range inputs {
		x, err := s.FromFloat32(t.Data, t.Shape...)
		if err != nil {
			r.err = err
			return r
		}
		in = append(in, x)
	}
	var outs []*accel.Tensor
	for range 2 {
		for _, o := range outs {
			s.Free(o)
		}
		start := time.Now()
		if outs, err = m.Run(ctx, s, in); err != nil {
			r.err = err
			return r
		}
		r.elapsed = time.Since(start)
	}
	for _, o := range outs {
		v, err := s.Float32(o)
		if err != nil {
			r.err = err
			return r
		}
		r.outputs = append(r.outputs, v)
	}
	return r
}

// relativeError is the largest over outputs of max|got − want| / max|want|;
// a NaN or infinity in got makes it +Inf.
func relativeError(got [][]float32, want []mnist.Tensor) float64 {
	worst := 0.0
	for o, w := range want {
		if len(got[o]) != len(w.Data) {
			return math.Inf(1)
		}
		var diff, scale float64
		for i, v := range w.Data {
			g := float64(got[o][i])
			if math.IsNaN(g) || math.IsInf(g, 0) {
				return math.Inf(1)
			}
			diff, scale = max(diff, math.Abs(g-float64(v))), max(scale, math.Abs(float64(v)))
		}
		if scale > 0 {
			worst = max(worst, diff/scale)
		} else if diff > 0 {
			return math.Inf(1)
		}
	}
	return worst
}

// sameBits compares two runs' outputs bit for bit and returns the first
// output and element that differ.
func sameBits(a, b [][]float32) (int, int, bool) {
	for o := range a {
		for i := range a[o] {
			if math.Float32bits(a[o][i]) != math.Float32bits(b[o][i]) {
				return o, i, false
			}
		}
	}
	return 0, 0, true
}
