package oracle

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Tolerances of the gradient check, all float64 arithmetic on the
// reference side.
const (
	// fdStep is the central-difference step; the loss is computed in
	// float64, so rounding contributes ~1e-16/fdStep ≈ 1e-11 and the
	// truncation error is O(fdStep²).
	fdStep = 1e-5
	// A sampled coordinate passes when |g − fd| ≤ rel·|fd| + abs·‖fd‖∞ of
	// that tensor's sample. The gorgonia side is float32, so it gets
	// float32-sized tolerances; the float64 reference gets tight ones.
	gorgoniaRelTol = 1e-4
	gorgoniaAbsTol = 1e-5
	refRelTol      = 1e-6
	refAbsTol      = 1e-7
	// Whole tensors: ||g_gorgonia − g_ref||₂ / ||g_ref||₂.
	gorgoniaVsRefTol = 1e-5
	// Loss: |loss_gorgonia − loss_ref| ≤ lossTol·|loss_ref|.
	lossTol = 1e-6
	// samples per tensor
	fdSamples = 20
)

// TestGradientsFiniteDifferences checks gorgonia's loss and gradients on a
// small random network (real shapes, batch of 3, fixed seeds) against
// central finite differences of an independent plain-Go float64 forward
// pass, for fdSamples coordinates of every parameter, and checks the
// float64 backward pass (used to make test dumps) the same way.
func TestGradientsFiniteDifferences(t *testing.T) {
	params := InitParams(1)
	x, labels := randomBatch(2, 3)

	loss, grads, err := Gradients(params, x, labels)
	if err != nil {
		t.Fatal(err)
	}
	ref := toRef(params)
	x64 := f64s(x)
	refLoss, base := refForward(ref, x64, labels, nil)
	refGrads := refBackward(ref, base, len(labels))
	t.Logf("loss: gorgonia %.8f, float64 reference %.10f", loss, refLoss)
	if d := math.Abs(float64(loss) - refLoss); d > lossTol*math.Abs(refLoss) {
		t.Errorf("loss differs by %.3g (> %.0e relative)", d, lossTol)
	}

	// The forward-only graph of Predict (what Accuracy uses), batch 2 of 3.
	logits, err := Predict(params, x, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rel := relL2(f64s(logits), base.logits); rel > gorgoniaVsRefTol {
		t.Errorf("Predict's logits: ||Δ||/||logits|| = %.3g (> %.0e)", rel, gorgoniaVsRefTol)
	} else {
		t.Logf("Predict's logits: ||Δ||/||logits|| = %.2e", rel)
	}

	rng := rand.New(rand.NewPCG(3, 3))
	// lossAt is the loss with parameter i's coordinate j set to v, and
	// whether the network kept base's activation pattern there. With
	// frozen set, base's pattern is imposed.
	lossAt := func(i, j int, v float64, frozen bool) (float64, bool) {
		old := ref[i][j]
		ref[i][j] = v
		defer func() { ref[i][j] = old }()
		if frozen {
			l, _ := refForward(ref, x64, labels, base)
			return l, true
		}
		l, c := refForward(ref, x64, labels, nil)
		return l, c.samePattern(base)
	}
	kinks := 0
	for i, name := range ParamNames {
		g := grads[name]
		rg := refGrads[i]

		// whole tensor, gorgonia vs the float64 backward pass
		rel := relL2(f64s(g), rg)
		if rel > gorgoniaVsRefTol {
			t.Errorf("%s: ||g_gorgonia − g_ref||/||g_ref|| = %.3g (> %.0e)", name, rel, gorgoniaVsRefTol)
		}

		// sampled coordinates, both against central differences; the
		// sample always includes the coordinate of the largest gradient
		coords := []int{argmaxAbs(rg)}
		for len(coords) < fdSamples && len(coords) < len(rg) {
			if j := rng.IntN(len(rg)); !slices.Contains(coords, j) {
				coords = append(coords, j)
			}
		}
		fd := make([]float64, len(coords))
		var fdMax float64
		tensorKinks := 0
		for k, j := range coords {
			w := ref[i][j]
			lp, samep := lossAt(i, j, w+fdStep, false)
			lm, samem := lossAt(i, j, w-fdStep, false)
			if !samep || !samem {
				// A relu or a pool maximum switches within ±fdStep: the
				// loss has a kink there and its central difference is not
				// the derivative. Difference the piece the base point is
				// on instead (same function up to the kink, smooth).
				tensorKinks++
				lp, _ = lossAt(i, j, w+fdStep, true)
				lm, _ = lossAt(i, j, w-fdStep, true)
			}
			fd[k] = (lp - lm) / (2 * fdStep)
			fdMax = math.Max(fdMax, math.Abs(fd[k]))
		}
		kinks += tensorKinks
		var worstG, worstR float64 // worst error as a fraction of its tolerance
		for k, j := range coords {
			eg := math.Abs(float64(g[j]) - fd[k])
			er := math.Abs(rg[j] - fd[k])
			tg := gorgoniaRelTol*math.Abs(fd[k]) + gorgoniaAbsTol*fdMax
			tr := refRelTol*math.Abs(fd[k]) + refAbsTol*fdMax
			worstG = math.Max(worstG, eg/tg)
			worstR = math.Max(worstR, er/tr)
			if eg > tg {
				t.Errorf("%s[%d]: gorgonia %.8g, finite difference %.8g (|Δ| %.3g > %.3g)", name, j, g[j], fd[k], eg, tg)
			}
			if er > tr {
				t.Errorf("%s[%d]: float64 backward %.10g, finite difference %.10g (|Δ| %.3g > %.3g)", name, j, rg[j], fd[k], er, tr)
			}
		}
		t.Logf("%-8s max|fd| %.3e  ||Δ||/||g|| gorgonia vs float64 ref %.2e  worst |Δ|/tol vs fd: gorgonia %.3f, float64 ref %.3f  (%d of %d samples at a kink)",
			name, fdMax, rel, worstG, worstR, tensorKinks, len(coords))
	}
	// Kinks are rare at this step; many would mean the check mostly
	// differences frozen patterns, which would weaken it.
	if kinks > len(ParamNames)*fdSamples/10 {
		t.Errorf("%d of %d samples sat at a kink", kinks, len(ParamNames)*fdSamples)
	}
}

func relL2(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		d := a[i] - b[i]
		num += d * d
		den += b[i] * b[i]
	}
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(num / den)
}

func argmaxAbs(v []float64) int {
	best := 0
	for i := range v {
		if math.Abs(v[i]) > math.Abs(v[best]) {
			best = i
		}
	}
	return best
}
