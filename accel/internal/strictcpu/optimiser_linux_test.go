package strictcpu

import (
	"fmt"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestOptimiserLoopsStayInBounds runs the optimisers' SIMD loops and their
// tails on tensors that end, or start, at the edge of inaccessible memory,
// for every length up to 40: a read or write one element too far crashes
// the test.
func TestOptimiserLoopsStayInBounds(t *testing.T) {
	pages := make([][]float32, 4)
	for i := range pages {
		pages[i] = guarded(t)
	}
	r := newRand(66)
	k := newAdamConsts(adamDefaults)
	for n := 1; n <= 40; n++ {
		for _, atEnd := range []bool{true, false} {
			var s [4][]float32
			for i, p := range pages {
				if atEnd {
					s[i] = p[len(p)-n:]
				} else {
					s[i] = p[:n]
				}
				copy(s[i], randF32(r, n))
			}
			w, g, m, v := s[0], s[1], s[2], s[3]
			for i := range v {
				v[i] *= v[i]
			}
			wantW, wantM, wantV := adamWant(w, g, m, v, adamDefaults)
			done := adamSIMD(w, g, m, v, k)
			adam(w[done:], g[done:], m[done:], v[done:], k)
			what := fmt.Sprintf("adam, %d elements (at the end: %v)", n, atEnd)
			checkBits(t, what+": w", w, wantW)
			checkBits(t, what+": m", m, wantM)
			checkBits(t, what+": v", v, wantV)

			p := accel.SGDParams{LearningRate: 0.1, Momentum: 0.9}
			sgdW, sgdV := sgdWant(w, g, m, p)
			done = sgdSIMD(w, g, m, p.LearningRate, p.Momentum)
			sgdMomentum(w[done:], g[done:], m[done:], p.LearningRate, p.Momentum)
			checkBits(t, fmt.Sprintf("sgd_momentum, %d elements (at the end: %v): w", n, atEnd), w, sgdW)
			checkBits(t, fmt.Sprintf("sgd_momentum, %d elements (at the end: %v): velocity", n, atEnd), m, sgdV)
		}
	}
}
