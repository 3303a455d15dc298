package strictcpu

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// tsneRun uploads in, runs one step and returns the new Y, U, G and KL.
func tsneRun(t *testing.T, threads int, in tsneInputs, p accel.TSNEParams) (y, u, g []float32, kl float32) {
	t.Helper()
	s := newSession(t, threads)
	st := in.state(t, s)
	kl, err := s.TSNEStep(bg, st, p)
	if err != nil {
		t.Fatalf("tsne_step: %v", err)
	}
	return readF32(t, s, st.Y), readF32(t, s, st.Update), readF32(t, s, st.Gains), kl
}

// TestTSNEStepHand works one step on two points through by hand: Y0 = (0,0),
// Y1 = (1,2), P = [[0, 0.3], [0.7, 0]] (the contract needs no symmetry).
func TestTSNEStepHand(t *testing.T) {
	in := tsneInputs{
		rowPtr: []int32{0, 1, 2}, cols: []int32{1, 0}, vals: []float32{0.3, 0.7},
		y: []float32{0, 0, 1, 2}, u: []float32{0.1, -0.1, 0, 0}, g: []float32{1, 1, 1, 1},
	}
	p := accel.TSNEParams{LearningRate: 100, Momentum: 0.5, Exaggeration: 4, MinGain: 0.01, ComputeKL: true}
	y, u, g, kl := tsneRun(t, 1, in, p)

	// The pair (0, 1): dx = -1, dy = -2, d2 = 5, q = 1/6; row 1 sees
	// dx = 1, dy = 2 and the same q.
	q := float32(1) / 6
	q2 := float32(q * q)
	Z := q + q
	rx := [2]float32{-q2, q2}
	ry := [2]float32{float32(q2 * -2), float32(q2 * 2)}
	d := [2][2]float32{{-1, -2}, {1, 2}}
	pv := [2]float32{0.3, 0.7}
	var wantY, wantU, wantG [4]float32
	for i := range 2 {
		pq := float32(pv[i] * q)
		ax, ay := float32(pq*d[i][0]), float32(pq*d[i][1])
		grad := [2]float32{
			float32(4 * (float32(4*ax) - rx[i]/Z)),
			float32(4 * (float32(4*ay) - ry[i]/Z)),
		}
		for c := range 2 {
			k := 2*i + c
			gv, uv, h := grad[c], in.u[k], in.g[k]
			if (gv > 0) != (uv > 0) {
				h = h + 0.2
			} else {
				h = float32(h * 0.8)
			}
			uv = float32(0.5*uv) - float32(100*float32(h*gv))
			wantY[k], wantU[k], wantG[k] = in.y[k]+uv, uv, h
		}
	}
	for c := range 2 {
		mean := (wantY[c] + wantY[2+c]) / 2
		wantY[c], wantY[2+c] = wantY[c]-mean, wantY[2+c]-mean
	}
	// Row 0's gradient along x is negative (it is pulled towards Y1 with
	// exaggeration 4) with u = 0.1 > 0, so its gain grows: a sign check
	// on the worked values themselves.
	if wantG[0] != float32(1)+0.2 || wantG[1] != float32(0.8) {
		t.Fatalf("worked example gains %v, not the intended case", wantG)
	}
	checkBits(t, "y", y, wantY[:])
	checkBits(t, "update", u, wantU[:])
	checkBits(t, "gains", g, wantG[:])
	wantKL := float32(0.3*strictmath.Log(float32(0.3*Z)/q)) + float32(0.7*strictmath.Log(float32(0.7*Z)/q))
	checkBits(t, "kl", []float32{kl}, []float32{wantKL})
	if math.Abs(float64(kl)-(0.3*math.Log(0.6)+0.7*math.Log(1.4))) > 1e-6 {
		t.Errorf("kl %g, want about %g", kl, 0.3*math.Log(0.6)+0.7*math.Log(1.4))
	}

	// Without ComputeKL the result is 0.
	p.ComputeKL = false
	if _, _, _, kl := tsneRun(t, 1, in, p); kl != 0 {
		t.Errorf("kl %g without ComputeKL", kl)
	}
}

// TestTSNEStepSkips checks the entries the contract leaves out: diagonal
// entries of P add neither attraction nor a KL term, and entries with p <= 0
// (or NaN) add no KL term.
func TestTSNEStepSkips(t *testing.T) {
	base := tsneInputs{
		rowPtr: []int32{0, 2, 3, 5}, cols: []int32{1, 2, 0, 0, 1}, vals: []float32{0.2, 0.1, 0.2, 0.1, 0.4},
		y: []float32{0, 0, 1, 2, -1, 0.5}, u: []float32{0.1, -0.1, 0, 0, 0.2, 0}, g: []float32{1, 1, 0.5, 1, 1, 2},
	}
	p := accel.TSNEParams{LearningRate: 10, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01, ComputeKL: true}
	y0, u0, g0, kl0 := tsneRun(t, 1, base, p)

	// The same rows with a diagonal entry (even an infinite one) and
	// entries of value 0, -1 and NaN appended.
	// Row 0 gets a second entry for column 2 with p = 0, which attracts
	// by ±0 and has no KL term, and a diagonal entry of -1; row 1 a NaN
	// diagonal entry.
	extra := tsneInputs{
		rowPtr: []int32{0, 4, 6, 9},
		cols:   []int32{1, 2, 2, 0, 0, 1, 0, 1, 2},
		vals:   []float32{0.2, 0.1, 0, -1, 0.2, float32(math.NaN()), 0.1, 0.4, inf},
		y:      base.y, u: base.u, g: base.g,
	}
	// Row 2's diagonal entry is infinite: it adds nothing at all.
	y1, u1, g1, kl1 := tsneRun(t, 1, extra, p)
	checkBits(t, "y", y1, y0)
	checkBits(t, "update", u1, u0)
	checkBits(t, "gains", g1, g0)
	if math.Float32bits(kl1) != math.Float32bits(kl0) {
		t.Errorf("kl with skipped entries %g, want %g", kl1, kl0)
	}
	if kl0 != kl0 || kl0 == 0 {
		t.Errorf("kl %g", kl0)
	}
}

// TestTSNEStepMinGain checks the floor on the gains and that Y is centred.
func TestTSNEStepMinGain(t *testing.T) {
	in := randomTSNE(newRand(5), 40, 6)
	for i := range in.g {
		in.g[i] = 0.001
	}
	y, _, g, _ := tsneRun(t, 2, in, accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.25})
	for i, h := range g {
		if h < 0.25 {
			t.Fatalf("gain %d is %g, below the minimum 0.25", i, h)
		}
	}
	for c := range 2 {
		var sum float64
		for i := c; i < len(y); i += 2 {
			sum += float64(y[i])
		}
		if math.Abs(sum/float64(len(y)/2)) > 1e-3 {
			t.Errorf("column %d has mean %g after centring", c, sum/float64(len(y)/2))
		}
	}
}

func TestTSNEStepCancel(t *testing.T) {
	in := randomTSNE(newRand(6), 3000, 10)
	p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}
	s := newSession(t, 2)
	st := in.state(t, s)

	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.TSNEStep(ctx, st, p); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled tsne_step: %v, want context.Canceled", err)
	}

	// A deadline stops a step that is under way, and the state is left as
	// it was.
	big := randomTSNE(newRand(7), 40000, 4)
	bst := big.state(t, s)
	ctx, cancel = context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.TSNEStep(ctx, bst, p)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("tsne_step past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("tsne_step took %v to notice its deadline", d)
	}
	checkBits(t, "y after a cancelled step", readF32(t, s, bst.Y), big.y)
	checkBits(t, "update after a cancelled step", readF32(t, s, bst.Update), big.u)
	checkBits(t, "gains after a cancelled step", readF32(t, s, bst.Gains), big.g)
}
