// Package check compares what an example guest got from the node with the
// same computation done inside the guest, and says so.
package check

import (
	"fmt"
	"math"
)

// Report prints how many values of got agree bit for bit with want, the
// in-guest result described by against. In strict mode every value must
// agree; otherwise, where tolerance > 0, the relative differences must stay
// within it.
func Report(mode, against string, got, want []float32, tolerance float64) error {
	same, maxRel := 0, 0.0
	for i := range got {
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			same++
			continue
		}
		d := math.Abs(float64(got[i]-want[i])) / math.Max(math.Abs(float64(want[i])), 1e-6)
		maxRel = math.Max(maxRel, d)
	}
	switch {
	case same == len(got):
		fmt.Printf("  check: bit-identical to %s (%d values)\n", against, len(got))
	case mode == "strict":
		return fmt.Errorf("strict mode, but only %d of %d values are bit-identical to %s", same, len(got), against)
	case tolerance > 0 && maxRel > tolerance:
		return fmt.Errorf("max relative difference %.3g to %s exceeds %.3g", maxRel, against, tolerance)
	default:
		fmt.Printf("  check: %d of %d values bit-identical to %s, max relative difference %.2g\n", same, len(got), against, maxRel)
	}
	return nil
}
