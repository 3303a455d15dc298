package conformance_test

import (
	"testing"

	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/ref"
)

func TestRef(t *testing.T) { conformance.TestAll(t, ref.New(0)) }

// TestRefOneThread checks that the results do not depend on the thread count.
func TestRefOneThread(t *testing.T) { conformance.TestAll(t, ref.New(1)) }
