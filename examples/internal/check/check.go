// Package check compares what an example guest got from the node with the
// same computation done inside the guest, and says so.
package check

import (
	"fmt"
	"math"
)

// Report prints how many values of got agree bit for bit with want, the
// in-guest result described by against. In strict mode every value must
// agree; otherwise, where tolerance > 0, the largest difference relative to
// the largest value of want must stay within it. (Relative to each value,
// a sum that cancels to near zero would fail any tolerance.)
func Report(mode, against string, got, want []float32, tolerance float64) error {
	scale := 1e-30
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	same, maxRel := 0, 0.0
	for i := range got {
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			same++
			continue
		}
		maxRel = math.Max(maxRel, math.Abs(float64(got[i]-want[i]))/scale)
	}
	switch {
	case same == len(got):
		fmt.Printf("  check: bit-identical to %s (%d values)\n", against, len(got))
	case mode == "strict":
		return fmt.Errorf("strict mode, but only %d of %d values are bit-identical to %s", same, len(got), against)
	case tolerance > 0 && maxRel > tolerance:
		return fmt.Errorf("max difference %.3g of the largest value, to %s, exceeds %.3g", maxRel, against, tolerance)
	default:
		fmt.Printf("  check: %d of %d values bit-identical to %s, max difference %.2g of the largest value\n", same, len(got), against, maxRel)
	}
	return nil
}
