package ref_test

import (
	"testing"

	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/conformance/conformancetest"
	"github.com/accelnode/accelnode/accel/ref"
)

func TestConformance(t *testing.T) { conformancetest.TestAll(t, ref.New(0)) }

// TestDeadline checks that long calls stop soon after their deadline, on
// the SIMD loops and on the portable ones.
func TestDeadline(t *testing.T) { conformancetest.TestDeadline(t, ref.New(0)) }

func TestDeadlinePortable(t *testing.T) { conformancetest.TestDeadline(t, ref.NewPortable(0)) }

// TestConformanceOneThread runs the quick corpus on one thread; the
// runner's tests compare one thread with all cores over the whole corpus,
// bit for bit.
func TestConformanceOneThread(t *testing.T) {
	conformancetest.TestCases(t, ref.New(1), conformance.Corpus(true))
}

// TestConformancePortable runs the quick corpus on the portable loops
// alone, which strict mode's ref-portable serves from.
func TestConformancePortable(t *testing.T) {
	conformancetest.TestCases(t, ref.NewPortable(0), conformance.Corpus(true))
}
