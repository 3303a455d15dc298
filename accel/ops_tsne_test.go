package accel_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestTSNEOpErrors checks what tsne_affinities, embedding_quality and the
// Barnes-Hut tsne_step refuse, before any work and with nothing left behind.
func TestTSNEOpErrors(t *testing.T) {
	ctx := context.Background()
	data := func(e *env, n, d int, special float32, at int) *accel.Tensor {
		r := rand.New(rand.NewPCG(1, 2))
		v := make([]float32, n*d)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		if at >= 0 {
			v[at] = special
		}
		return e.fill(v, n, d)
	}
	affinities := func(n, d int, perplexity, special float32, at int) func(e *env) error {
		return func(e *env) error {
			x := data(e, n, d, special, at)
			e.mark()
			_, _, _, err := e.s.TSNEAffinities(ctx, x, accel.TSNEAffinitiesParams{Perplexity: perplexity})
			return err
		}
	}
	quality := func(n, d, ny, e2, k int, labels bool, special float32, at int) func(e *env) error {
		return func(e *env) error {
			x, y := data(e, n, d, 0, -1), data(e, ny, e2, special, at)
			var l *accel.Tensor
			if labels {
				l = e.i32(make([]int32, ny)...)
			}
			e.mark()
			_, _, err := e.s.EmbeddingQuality(ctx, x, y, l, accel.EmbeddingQualityParams{K: k})
			return err
		}
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	theta := func(th float32) func(e *env) error {
		return func(e *env) error {
			st, p := e.tsne(), tsneParams
			p.Theta = th
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, p)
			return err
		}
	}
	runErrCases(t, []errCase{
		{"tsne_affinities", nil, affinities(20, 3, 5, 0, -1)},
		{"tsne_affinities perplexity N-1, k = N-1", nil, affinities(20, 3, 19, 0, -1)},
		{"tsne_affinities N=2", nil, affinities(2, 1, 1, 0, -1)},
		{"tsne_affinities perplexity N", accel.ErrInvalid, affinities(20, 3, 20, 0, -1)},
		{"tsne_affinities perplexity below 1", accel.ErrInvalid, affinities(20, 3, 0.5, 0, -1)},
		{"tsne_affinities perplexity NaN", accel.ErrInvalid, affinities(20, 3, nan, 0, -1)},
		{"tsne_affinities perplexity +Inf", accel.ErrInvalid, affinities(20, 3, inf, 0, -1)},
		{"tsne_affinities N=1", accel.ErrInvalid, affinities(1, 3, 1, 0, -1)},
		{"tsne_affinities NaN in x", accel.ErrInvalid, affinities(20, 3, 5, nan, 31)},
		{"tsne_affinities -Inf in x", accel.ErrInvalid, affinities(20, 3, 5, -inf, 59)},
		{"tsne_affinities x rank 1", accel.ErrShape, func(e *env) error {
			x := e.f32(20)
			e.mark()
			_, _, _, err := e.s.TSNEAffinities(ctx, x, accel.TSNEAffinitiesParams{Perplexity: 5})
			return err
		}},
		{"tsne_affinities i32 x", accel.ErrInvalid, func(e *env) error {
			x := e.i32(1, 2, 3, 4)
			e.mark()
			_, _, _, err := e.s.TSNEAffinities(ctx, x, accel.TSNEAffinitiesParams{Perplexity: 1})
			return err
		}},

		{"embedding_quality", nil, quality(20, 3, 20, 2, 5, true, 0, -1)},
		{"embedding_quality without labels", nil, quality(20, 3, 20, 2, 9, false, 0, -1)},
		{"embedding_quality k 0", accel.ErrInvalid, quality(20, 3, 20, 2, 0, true, 0, -1)},
		{"embedding_quality 2k = N", accel.ErrInvalid, quality(20, 3, 20, 2, 10, true, 0, -1)},
		{"embedding_quality rows differ", accel.ErrShape, quality(20, 3, 19, 2, 5, false, 0, -1)},
		{"embedding_quality NaN in y", accel.ErrInvalid, quality(20, 3, 20, 2, 5, true, nan, 7)},
		{"embedding_quality labels length", accel.ErrShape, func(e *env) error {
			x, y, l := data(e, 20, 3, 0, -1), data(e, 20, 2, 0, -1), e.i32(1, 2, 3)
			e.mark()
			_, _, err := e.s.EmbeddingQuality(ctx, x, y, l, accel.EmbeddingQualityParams{K: 5})
			return err
		}},

		{"tsne_step theta 0.5", nil, theta(0.5)},
		{"tsne_step theta negative", accel.ErrInvalid, theta(-0.5)},
		{"tsne_step theta NaN", accel.ErrInvalid, theta(nan)},
		{"tsne_step theta +Inf", accel.ErrInvalid, theta(inf)},
	})
}

// TestTSNEInvalidMessages checks that a refusal says what was wrong, in the
// words a guest reads from last_error.
func TestTSNEInvalidMessages(t *testing.T) {
	e := newEnv(t, accel.Limits{}, nil)
	x := e.fill([]float32{0, 1, 2, float32(math.NaN()), 4, 5}, 3, 2)
	_, _, _, err := e.s.TSNEAffinities(context.Background(), x, accel.TSNEAffinitiesParams{Perplexity: 1})
	if err == nil || !strings.Contains(err.Error(), "x holds NaN at element 3") {
		t.Errorf("NaN in x: %v", err)
	}
	_, _, _, err = e.s.TSNEAffinities(context.Background(), x, accel.TSNEAffinitiesParams{Perplexity: 3})
	if err == nil || !strings.Contains(err.Error(), "perplexity 3 must be at least 1 and below the number of points, 3") {
		t.Errorf("perplexity 3 of 3 points: %v", err)
	}
}

// TestCheckedInputsRecheckedAfterWrites checks that the finiteness check of
// an input is made again once the input is written, by the guest or in
// place by tsne_step.
func TestCheckedInputsRecheckedAfterWrites(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accel.Limits{}, nil)
	st := e.tsne()
	x := e.fill(slices.Repeat([]float32{1, 2}, st.N()), st.N(), 2)
	q := accel.EmbeddingQualityParams{K: 1}
	if _, _, err := e.s.EmbeddingQuality(ctx, x, st.Y, nil, q); err != nil {
		t.Fatal(err)
	}
	// An SGD step, in place, with an infinite gradient makes y infinite.
	grad := e.fill([]float32{float32(math.Inf(1)), 0, 0, 0, 0, 0}, st.N(), 2)
	if err := e.s.SGDMomentum(ctx, st.Y, grad, e.f32(st.N(), 2), accel.SGDParams{LearningRate: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.EmbeddingQuality(ctx, x, st.Y, nil, q); err == nil {
		t.Error("a y made non-finite by tsne_step passed the remembered check")
	}
	if err := e.s.Write(x, 0, accel.EncodeFloat32([]float32{float32(math.Inf(-1))})); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := e.s.TSNEAffinities(ctx, x, accel.TSNEAffinitiesParams{Perplexity: 1}); err == nil {
		t.Error("an x written with -Inf passed the remembered check")
	}
}
