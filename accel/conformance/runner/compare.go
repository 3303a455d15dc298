package runner

import (
	"math"
	"slices"

	"github.com/accelnode/accelnode/accel/conformance"
)

// Diff is how far one output lies from the reference's.
type Diff struct {
	Name     string `json:"name"`
	Elements int    `json:"elements"`
	// Identical counts the elements with the reference's bits.
	Identical int `json:"identical"`
	// MaxULP and MeanULP are the distance in float32 steps
	// (conformance.ULPs, which puts -0 and +0 0 apart) over the elements
	// where both values are finite; the others are counted below.
	MaxULP  int64   `json:"max_ulp"`
	MeanULP float64 `json:"mean_ulp"`
	// NaNInf counts the positions where one value is NaN or ±Inf and the
	// other is not the same kind of value (a number, the other infinity, or
	// NaN against Inf).
	NaNInf int `json:"nan_inf_mismatches"`
	// NaNBits counts the positions where both are NaN with different bits:
	// the contract writes every NaN as the canonical 0x7fc00000.
	NaNBits int `json:"nan_bits_mismatches"`
	// SignedZero counts the positions where one is -0 and the other +0.
	SignedZero int `json:"signed_zero_mismatches"`

	sumULP   float64
	compared int
}

// BitExact reports whether every element has the reference's bits.
func (d Diff) BitExact() bool { return d.Identical == d.Elements }

// Compare measures got against want, element by element.
func Compare(name string, got, want []float32) Diff {
	d := Diff{Name: name, Elements: len(want)}
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) == math.Float32bits(w) {
			d.Identical++
			if !math.IsInf(float64(g), 0) && g == g {
				d.compared++
			}
			continue
		}
		gNaN, wNaN := g != g, w != w
		gInf, wInf := math.IsInf(float64(g), 0), math.IsInf(float64(w), 0)
		switch {
		case gNaN && wNaN:
			d.NaNBits++
		case gNaN || wNaN || gInf || wInf:
			d.NaNInf++
		default:
			if g == 0 && w == 0 {
				d.SignedZero++
			}
			u := conformance.ULPs(g, w)
			d.MaxULP = max(d.MaxULP, u)
			d.sumULP += float64(u)
			d.compared++
		}
	}
	if d.compared > 0 {
		d.MeanULP = d.sumULP / float64(d.compared)
	}
	return d
}

// CompareInts measures an i32 output got against want: only identity
// counts, since integers have no ulps.
func CompareInts(name string, got, want []int32) Diff {
	d := Diff{Name: name, Elements: len(want)}
	for i := range want {
		if i < len(got) && got[i] == want[i] {
			d.Identical++
		}
	}
	return d
}

// compareOutput measures one output, f32 or i32, against the reference's.
func compareOutput(got, want conformance.Tensor) Diff {
	if want.I32 != nil || got.I32 != nil {
		return CompareInts(want.Name, got.I32, want.I32)
	}
	return Compare(want.Name, got.F32, want.F32)
}

// sameBits reports whether a and b hold the same bits.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// sameOutputs reports whether two runs gave the same bits in every output.
func sameOutputs(a, b []conformance.Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameBits(a[i].F32, b[i].F32) || !slices.Equal(a[i].I32, b[i].I32) {
			return false
		}
	}
	return true
}
