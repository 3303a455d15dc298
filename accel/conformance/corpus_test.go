package conformance

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// Every operation of the op table has cases.
func TestEveryOpCovered(t *testing.T) {
	if ops := Ops(); !slices.Equal(ops, accel.Ops()) {
		t.Errorf("the corpus covers %v, the op table lists %v", ops, accel.Ops())
	}
	for _, op := range accel.Ops() {
		if len(Cases(op, true)) == 0 {
			t.Errorf("%s has no quick cases", op)
		}
	}
}

func TestCorpus(t *testing.T) {
	full, quick := Corpus(false), Corpus(true)
	if len(quick) == 0 || len(quick) >= len(full) {
		t.Fatalf("%d quick cases of %d", len(quick), len(full))
	}
	seen := map[string]bool{}
	classes := map[*accel.Op]map[string]bool{}
	for _, c := range full {
		if seen[c.String()] {
			t.Errorf("case %s twice", c)
		}
		seen[c.String()] = true
		if classes[c.Op] == nil {
			classes[c.Op] = map[string]bool{}
		}
		if !slices.Contains(ValueClasses, c.Values) {
			t.Errorf("%s: unknown value class %q", c, c.Values)
		}
		classes[c.Op][c.Values] = true
		if !slices.Contains([]string{SizeTiny, SizeOdd, SizeTall, SizeSkinny, SizeLarge}, c.Size) {
			t.Errorf("%s: unknown size class %q", c, c.Size)
		}
		if c.Quick != (c.Size == SizeTiny || c.Size == SizeOdd) {
			t.Errorf("%s: quick = %v", c, c.Quick)
		}
	}
	for _, op := range Ops() {
		if len(classes[op]) < 8 {
			t.Errorf("%s has value classes %v", op, classes[op])
		}
	}
	for _, op := range []*accel.Op{accel.MatMul, accel.Conv2D} {
		for _, class := range ValueClasses {
			if !classes[op][class] {
				t.Errorf("%s lacks value class %s", op, class)
			}
		}
	}
}

// Every quick case's inputs fit its operation, and are the same on every
// call.
func TestCaseInputs(t *testing.T) {
	for _, c := range Corpus(true) {
		a, b := c.Inputs(), c.Inputs()
		if len(a) != len(c.Op.Inputs) {
			t.Errorf("%s: %d inputs, want %d", c, len(a), len(c.Op.Inputs))
			continue
		}
		shapes := make([][]int, len(a))
		for i, in := range a {
			spec := c.Op.Inputs[i]
			switch {
			case in.Absent():
				if !spec.Optional {
					t.Errorf("%s: input %s is absent", c, spec.Name)
				}
				continue
			case in.Name != spec.Name:
				t.Errorf("%s: input %d is %s, want %s", c, i, in.Name, spec.Name)
			case (in.I32 != nil) != (spec.DType == accel.I32):
				t.Errorf("%s: input %s has the wrong dtype", c, in.Name)
			case len(in.F32)+len(in.I32) != elements(in.Shape):
				t.Errorf("%s: input %s has %d elements for %v", c, in.Name, len(in.F32)+len(in.I32), in.Shape)
			}
			shapes[i] = in.Shape
			if !slices.Equal(bitsOf(in.F32), bitsOf(b[i].F32)) || !slices.Equal(in.I32, b[i].I32) {
				t.Errorf("%s: input %s differs between calls", c, in.Name)
			}
		}
		if _, err := c.Op.Shapes(shapes, c.Params); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}

func bitsOf(v []float32) []uint32 {
	b := make([]uint32, len(v))
	for i, x := range v {
		b[i] = math.Float32bits(x)
	}
	return b
}

// The exact class is what it claims: every matmul sum gives the same
// float32 forwards, backwards and in float64.
func TestExactlySummable(t *testing.T) {
	for _, c := range Cases(accel.MatMul, false) {
		if c.Values != Exact {
			continue
		}
		in := c.Inputs()
		p := c.Params.(accel.MatMulParams)
		m, k, n, err := accel.MatMulDims(in[0].Shape, in[1].Shape, p)
		if err != nil {
			t.Fatal(err)
		}
		at := func(i, kk int) float32 {
			if p.TransA {
				return in[0].F32[kk*m+i]
			}
			return in[0].F32[i*k+kk]
		}
		bt := func(kk, j int) float32 {
			if p.TransB {
				return in[1].F32[j*k+kk]
			}
			return in[1].F32[kk*n+j]
		}
		for i := range m {
			for j := range n {
				var fwd, bwd float32
				var exact float64
				for kk := range k {
					fwd += float32(at(i, kk) * bt(kk, j))
					bwd += float32(at(i, k-1-kk) * bt(k-1-kk, j))
					exact += float64(at(i, kk)) * float64(bt(kk, j))
				}
				if fwd != bwd || float64(fwd) != exact {
					t.Fatalf("%s: C[%d,%d] is %g forwards, %g backwards, %g exactly", c, i, j, fwd, bwd, exact)
				}
			}
		}
	}
}

// Execute returns the results in order, named, and frees what it made;
// Parts cut the batch so that the parts' results are slices of the whole.
func TestExecuteAndParts(t *testing.T) {
	s, err := accel.NewSession(Spec(), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, op := range Ops() {
		for _, c := range Cases(op, true) {
			in := c.Inputs()
			got, err := Execute(t.Context(), s, c, in)
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			if s.LiveTensors() != 0 {
				t.Fatalf("%s: %d tensors left live", c, s.LiveTensors())
			}
			want, err := results(op, c.Params, in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d results, want %d", c, len(got), len(want))
			}
			for i := range want {
				n := len(got[i].F32) + len(got[i].I32)
				if got[i].Name != want[i].name || !slices.Equal(got[i].Shape, want[i].shape) || n != elements(want[i].shape) {
					t.Errorf("%s: result %d is %s %v with %d elements, want %s %v", c, i, got[i].Name, got[i].Shape, n, want[i].name, want[i].shape)
				}
				if (got[i].I32 != nil) != (i < len(op.Outputs) && op.OutputDType(i) == accel.I32) {
					t.Errorf("%s: result %s has the wrong element type", c, got[i].Name)
				}
			}
			for _, part := range Parts(c, in) {
				alone, err := Execute(t.Context(), s, c, part.Inputs)
				if err != nil {
					t.Fatalf("%s, %s: %v", c, part.Name, err)
				}
				if end := part.Offset + len(alone[0].F32); end > len(got[0].F32) || !slices.Equal(bitsOf(alone[0].F32), bitsOf(got[0].F32[part.Offset:end])) {
					t.Errorf("%s: %s alone differs from its part of the whole", c, part.Name)
				}
			}
		}
	}
	for _, op := range []*accel.Op{accel.MatMul, accel.Conv2D, accel.MaxPool2D, accel.Softmax, accel.Add} {
		if !slices.ContainsFunc(Cases(op, true), func(c Case) bool { return len(Parts(c, c.Inputs())) > 0 }) {
			t.Errorf("no quick case of %s has batch-invariance parts", op)
		}
	}
}

// result names and shapes one result of a call.
type result struct {
	name  string
	shape []int
}

// results lists what a call of op with p on in produces, in order: the new
// outputs (op.Outputs), the new values of the in-place inputs, and the
// scalar (shape [1]) where the call asks for it.
func results(op *accel.Op, p any, in []Tensor) ([]result, error) {
	shapes := make([][]int, len(in))
	for i, t := range in {
		shapes[i] = t.Shape
	}
	out, err := op.Shapes(shapes, p)
	if err != nil {
		return nil, fmt.Errorf("shapes of %s: %w", op, err)
	}
	var rs []result
	for i, name := range op.Outputs {
		rs = append(rs, result{name, out[i]})
	}
	for i, spec := range op.Inputs {
		if spec.InPlace {
			rs = append(rs, result{spec.Name, in[i].Shape})
		}
	}
	if op.WantsScalar(p) {
		rs = append(rs, result{op.Scalar, []int{1}})
	}
	return rs, nil
}
