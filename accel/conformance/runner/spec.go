package runner

import (
	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// Spec returns a backend that computes every operation with the contract's
// literal transcription (conformance.Spec): one thread, no attempt at
// speed. As Config.Reference it checks the reference backend itself against
// docs/determinism.md.
func Spec() accel.Backend { return conformance.Spec() }
