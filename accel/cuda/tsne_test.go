package cuda

import (
	"errors"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
)

// TestTSNEBarnesHutUnsupported checks that a tsne_step with θ > 0 is refused
// as unsupported in every mode, before any device work (this needs no GPU):
// the GPU kernel computes the exact repulsion only.
func TestTSNEBarnesHutUnsupported(t *testing.T) {
	s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := newBackend(false)
	b.dev = fakeDevice(nil)
	for _, mode := range modes {
		c := callOf(t, s, accel.TSNEStep, mode)
		p := c.Params.(accel.TSNEParams)
		p.Theta = 0.5
		c.Params = p
		err := b.Kernel(accel.TSNEStep, mode)(t.Context(), c)
		if !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), "Barnes-Hut") {
			t.Errorf("%v: tsne_step with theta 0.5: %v, want ErrUnsupported naming Barnes-Hut", mode, err)
		}
	}
}
