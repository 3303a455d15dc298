package conformance

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/accelnode/accelnode/accel"
)

// Check names what a Problem broke.
type Check int

const (
	// Accuracy: a result lies beyond its float64 error bound, or breaks a
	// property the bounds do not cover (a t-SNE embedding is centred).
	Accuracy Check = iota + 1
	// Contract: in strict mode, a result's bits differ from the contract's
	// transcription.
	Contract
	// Inputs: an input the call only reads reads back with other bits.
	Inputs
	// RunToRun: a second run on the same inputs gives other bits.
	RunToRun
	// Batch: part of the batch computed alone differs from the same part
	// of the full result. Only strict mode promises batch invariance.
	Batch
)

func (c Check) String() string {
	switch c {
	case Accuracy:
		return "accuracy"
	case Contract:
		return "contract"
	case Inputs:
		return "inputs"
	case RunToRun:
		return "run to run"
	case Batch:
		return "batch"
	}
	return "check(" + strconv.Itoa(int(c)) + ")"
}

// Problem is one check a case failed.
type Problem struct {
	Check Check
	// Text says what differs and lists the first mismatching elements.
	Text string
}

func (p Problem) String() string { return p.Text }

// Verify runs c in s and checks, for every step of it:
//
//  1. accuracy: each result against the same operation computed in float64
//     from the same float32 inputs, within the error bound derived with the
//     reference value (float64.go). Where the float64 result is NaN or ±Inf,
//     the output must be NaN or the same infinity.
//  2. the numerics contract, when s is in strict mode: each result bit for
//     bit against the contract's literal transcription (spec.go).
//  3. that every input the call only reads reads back with the bits
//     written (for tsne_step P; the embedding, update and gains are state,
//     checked as results).
//  4. that a second run from the same inputs gives the same bits.
//
// and then batch invariance: each of the case's Parts computed alone
// equals its part of the full result, bit for bit.
//
// Verify returns the problems found, with those found before a call
// failed, and then the error.
func Verify(ctx context.Context, s *accel.Session, c Case) (_ []Problem, err error) {
	o := operations[c.Op]
	if o == nil {
		return nil, fmt.Errorf("the corpus does not cover %s", c.Op)
	}
	in := c.Inputs()
	x, err := upload(s, c.Op, in)
	if err != nil {
		return nil, err
	}
	defer func() {
		if ferr := x.free(); err == nil {
			err = ferr
		}
	}()

	var problems []Problem
	steps, state := c.steps(), in
	var first []Tensor // the first step's results
	for step := range steps {
		report := func(check Check, format string, args ...any) {
			text := fmt.Sprintf(format, args...)
			if steps > 1 {
				text = fmt.Sprintf("step %d of %d: %s", step+1, steps, text)
			}
			problems = append(problems, Problem{Check: check, Text: text})
		}
		fail := func(err error) error {
			if steps > 1 {
				return fmt.Errorf("step %d of %d: %w", step+1, steps, err)
			}
			return err
		}
		got, err := x.run(ctx, c.Params)
		if err != nil {
			return problems, fail(err)
		}
		if first == nil {
			first = got
		}

		ref := o.float64(c.Params, state)
		if len(ref.results) != len(got) {
			return problems, fail(fmt.Errorf("the float64 reference gives %d results, the call %d", len(ref.results), len(got)))
		}
		for i, r := range got {
			if ref.results[i] == nil {
				continue // the check covers it
			}
			if d := nearDiff(r.Shape, r.F32, ref.results[i]); d != "" {
				report(Accuracy, "%s differs from float64 beyond the error bound:\n%s", r.Name, d)
			}
		}
		if ref.check != nil {
			for _, d := range ref.check(got) {
				report(Accuracy, "%s", d)
			}
		}

		if s.Mode() == accel.Strict {
			spec := o.spec(c.Params, state)
			if len(spec) != len(got) {
				return problems, fail(fmt.Errorf("the transcription gives %d results, the call %d", len(spec), len(got)))
			}
			for i, r := range got {
				if d := resultDiff(r, spec[i]); d != "" {
					report(Contract, "%s differs from the contract (docs/determinism.md):\n%s", r.Name, d)
				}
			}
		}

		for i, spec := range c.Op.Inputs {
			if spec.InPlace || in[i].Absent() {
				continue
			}
			back, err := x.read(i)
			if err != nil {
				return problems, fail(err)
			}
			if d := inputDiff(state[i], back); d != "" {
				report(Inputs, "input %s was modified:\n%s", state[i].Name, d)
			}
		}

		// Again from the same state.
		for i, spec := range c.Op.Inputs {
			if spec.InPlace {
				if err := x.write(i, state[i]); err != nil {
					return problems, fail(err)
				}
			}
		}
		again, err := x.run(ctx, c.Params)
		if err != nil {
			return problems, fail(fmt.Errorf("second run: %w", err))
		}
		for i, r := range got {
			if d := resultDiff(again[i], r); d != "" {
				report(RunToRun, "second run on the same inputs gives another %s (got: second, want: first):\n%s", r.Name, d)
			}
		}
		state = nextState(c.Op, state, again)
	}

	for _, part := range Parts(c, in) {
		alone, err := Execute(ctx, s, c, part.Inputs)
		if err != nil {
			return problems, fmt.Errorf("%s alone: %w", part.Name, err)
		}
		got, full := alone[0], first[0].F32
		if end := part.Offset + len(got.F32); end > len(full) {
			problems = append(problems, Problem{Check: Batch, Text: fmt.Sprintf("%s computed alone gives %d elements, beyond the full batch's %d", part.Name, len(got.F32), len(full))})
		} else if d := bitDiff(got.Shape, got.F32, full[part.Offset:end]); d != "" {
			problems = append(problems, Problem{Check: Batch, Text: fmt.Sprintf("%s computed alone differs from the full batch (got: alone, want: full; indices within the part):\n%s", part.Name, d)})
		}
	}
	return problems, nil
}

// nextState is the inputs of the step after one that gave res: in-place
// inputs take their new values.
func nextState(op *accel.Op, in, res []Tensor) []Tensor {
	next := append([]Tensor(nil), in...)
	k := len(op.Outputs)
	for i, spec := range op.Inputs {
		if spec.InPlace {
			next[i] = Tensor{Name: in[i].Name, Shape: in[i].Shape, F32: res[k].F32}
			k++
		}
	}
	return next
}

// resultDiff describes the elements of the result got whose bits differ
// from want's, f32 or i32, or returns "" when all agree.
func resultDiff(got, want Tensor) string {
	if got.I32 != nil || want.I32 != nil {
		return wordDiff(got.Shape, accel.EncodeInt32(got.I32), accel.EncodeInt32(want.I32),
			func(w uint32) string { return strconv.Itoa(int(int32(w))) })
	}
	return bitDiff(got.Shape, got.F32, want.F32)
}

// inputDiff describes the elements of got whose bits differ from want's.
func inputDiff(want, got Tensor) string {
	if want.I32 != nil {
		return wordDiff(want.Shape, accel.EncodeInt32(got.I32), accel.EncodeInt32(want.I32),
			func(w uint32) string { return strconv.Itoa(int(int32(w))) })
	}
	return wordDiff(want.Shape, accel.EncodeFloat32(got.F32), accel.EncodeFloat32(want.F32),
		func(w uint32) string { return fbits(math.Float32frombits(w)) })
}
