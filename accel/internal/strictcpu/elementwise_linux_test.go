package strictcpu

import (
	"fmt"
	"testing"
)

// TestReluClipLoopsStayInBounds runs the SIMD loops of relu and clip and
// their tails on slices that end, or start, at the edge of inaccessible
// memory, for every length up to 40: a read or write one element too far
// crashes the test.
func TestReluClipLoopsStayInBounds(t *testing.T) {
	skipWithoutElemSIMD(t)
	xp, yp := guarded(t), guarded(t)
	r := newRand(74)
	for n := 1; n <= 40; n++ {
		for _, atEnd := range []bool{true, false} {
			x, y := xp[:n], yp[:n]
			if atEnd {
				x, y = xp[len(xp)-n:], yp[len(yp)-n:]
			}
			copy(x, elemInputs(r, n, 0, 6, false))
			want := make([]float32, n)

			relu(want, x)
			done := reluSIMD(y, x)
			relu(y[done:], x[done:])
			checkBits(t, fmt.Sprintf("relu, %d elements (at the end: %v)", n, atEnd), y, want)

			clip(want, x, 0, 6)
			done = clipSIMD(y, x, 0, 6)
			clip(y[done:], x[done:], 0, 6)
			checkBits(t, fmt.Sprintf("clip, %d elements (at the end: %v)", n, atEnd), y, want)
		}
	}
}
