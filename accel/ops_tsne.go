package accel

// The operations around a t-SNE run: the input affinities P from the data,
// and the quality of an embedding. tsne_step (ops.go) runs the iterations.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
)

// ---- tsne_affinities -------------------------------------------------------

// TSNEAffinitiesParams are the parameters of tsne_affinities.
type TSNEAffinitiesParams struct {
	// Perplexity is the effective number of neighbours each point's
	// Gaussian is fitted to: at least 1 and below N.
	Perplexity float32
}

// The cost of tsne_affinities' parts.
const (
	// affinitySelectUnits counts a candidate neighbour offered to a
	// point's list, beside its distance's 3·D.
	affinitySelectUnits = 4
	// TSNESearchSteps is the most bisection steps of a point's precision
	// search (docs/determinism.md).
	TSNESearchSteps = 100
	// affinityStepUnits counts one neighbour in one step of the search: an
	// exp, a product and two sums.
	affinityStepUnits = 30
	// affinityEntryUnits counts an entry of P: its transposed copy, the
	// merge of a row and the symmetric value.
	affinityEntryUnits = 16
)

// TSNENeighbours is k = min(N−1, ⌊3·perplexity⌋), the neighbours each
// point's conditional distribution spans.
func TSNENeighbours(n int, perplexity float32) int {
	return int(min(float64(n-1), math.Floor(3*float64(perplexity))))
}

// TSNEAffinities computes t-SNE's input affinities from data x [N,D]: each
// point's k nearest neighbours (exact, ties to the lower index), a Gaussian
// whose precision a bisection fits to the perplexity, and the symmetric
// joint probabilities P = (P_j|i + P_i|j) / 2N. P comes in the CSR form
// tsne_step takes: row_ptr i32[N+1], cols i32[2·N·k] and vals f32[2·N·k],
// each row's columns increasing. row_ptr[N] is the number of entries used;
// those after it are 0.
var TSNEAffinities = define(opDef[TSNEAffinitiesParams]{
	Op: Op{
		Name: "tsne_affinities", Contract: "tsne_affinities",
		Inputs:          []Input{{Name: "x", DType: F32, Checked: true}},
		Outputs:         []string{"row_ptr", "cols", "vals"},
		OutputDTypes:    []DType{I32, I32, F32},
		ParamWords:      []string{"perplexity", "flags"},
		ParamsByPointer: true,
		// Bits or nothing: a distance one rounding off can change a
		// neighbour, and the structure with it.
	},
	decode: func(w []uint32) (TSNEAffinitiesParams, error) {
		if w[1] != 0 {
			return TSNEAffinitiesParams{}, fmt.Errorf("%w: unknown flags %#x", ErrInvalid, w[1])
		}
		return TSNEAffinitiesParams{Perplexity: math.Float32frombits(w[0])}, nil
	},
	shape: func(in [][]int, p TSNEAffinitiesParams) ([][]int, error) {
		x := in[0]
		if len(x) != 2 {
			return nil, fmt.Errorf("%w: data is %s, want [N x D]", ErrShape, ShapeString(x))
		}
		n := x[0]
		if n < 2 || x[1] < 1 {
			return nil, fmt.Errorf("%w: needs at least 2 points of at least 1 dimension, got %s", ErrInvalid, ShapeString(x))
		}
		if pp := float64(p.Perplexity); !(pp >= 1) || pp >= float64(n) || math.IsInf(pp, 0) {
			return nil, fmt.Errorf("%w: perplexity %g must be at least 1 and below the number of points, %d", ErrInvalid, p.Perplexity, n)
		}
		k := TSNENeighbours(n, p.Perplexity)
		if int64(n)*int64(k) > MaxElements/2 {
			return nil, fmt.Errorf("%w: %d points with %d neighbours each give more than %d entries", ErrInvalid, n, k, MaxElements)
		}
		return [][]int{{n + 1}, {2 * n * k}, {2 * n * k}}, nil
	},
	units: func(in, out [][]int, p TSNEAffinitiesParams) uint64 {
		N, D := uint64(in[0][0]), uint64(in[0][1])
		K := uint64(TSNENeighbours(in[0][0], p.Perplexity))
		units := CallUnits + (3*D+affinitySelectUnits)*N*(N-1)
		units += affinityStepUnits*TSNESearchSteps*N*K + affinityEntryUnits*2*N*K
		return units + 4*N*D + 4*(N+1) + 16*N*K
	},
	// Each point's neighbours, distances and conditional probabilities,
	// and the transposed lists: 24 bytes a neighbour, 16 a point.
	scratch: func(in, _ [][]int, p TSNEAffinitiesParams) int64 {
		n := int64(in[0][0])
		return 24*n*int64(TSNENeighbours(in[0][0], p.Perplexity)) + 16*n
	},
})

// TSNEAffinities returns P for data x at the perplexity: row_ptr, cols and
// vals, ready for tsne_step.
func (s *Session) TSNEAffinities(ctx context.Context, x *Tensor, p TSNEAffinitiesParams) (rowPtr, cols, vals *Tensor, err error) {
	out, _, err := s.Run(ctx, TSNEAffinities, p, x)
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0], out[1], out[2], nil
}

// ---- embedding_quality -----------------------------------------------------

// EmbeddingQualityParams are the parameters of embedding_quality.
type EmbeddingQualityParams struct {
	// K is the neighbourhood size: at least 1 and below N/2.
	K int
}

// EmbeddingQuality measures an embedding y [N,E] of data x [N,D]: its
// trustworthiness at k (Venna and Kaski; scikit-learn's trustworthiness),
// from exact ranks, and, given labels i32[N], the accuracy of a
// leave-one-out k-nearest-neighbour vote in the embedding. The output is
// f32[2]: trustworthiness, then accuracy (NaN without labels).
var EmbeddingQuality = define(opDef[EmbeddingQualityParams]{
	Op: Op{
		Name: "embedding_quality", Contract: "embedding_quality",
		Inputs: []Input{
			{Name: "x", DType: F32, Checked: true}, {Name: "y", DType: F32, Checked: true},
			{Name: "labels", DType: I32, Optional: true},
		},
		Outputs:         []string{"quality"},
		ParamWords:      []string{"k"},
		ParamsByPointer: true,
	},
	decode: func(w []uint32) (EmbeddingQualityParams, error) {
		if w[0] > MaxElements {
			return EmbeddingQualityParams{}, fmt.Errorf("%w: k=%d", ErrInvalid, w[0])
		}
		return EmbeddingQualityParams{K: int(w[0])}, nil
	},
	shape: func(in [][]int, p EmbeddingQualityParams) ([][]int, error) {
		x, y, labels := in[0], in[1], in[2]
		if len(x) != 2 || len(y) != 2 || x[0] != y[0] || x[1] < 1 || y[1] < 1 {
			return nil, fmt.Errorf("%w: data %s and embedding %s must be [N x D] and [N x E]", ErrShape, ShapeString(x), ShapeString(y))
		}
		n := x[0]
		if labels != nil && (len(labels) != 1 || labels[0] != n) {
			return nil, fmt.Errorf("%w: labels %s, want [%d]", ErrShape, ShapeString(labels), n)
		}
		if p.K < 1 || 2*p.K >= n {
			return nil, fmt.Errorf("%w: k=%d must be at least 1 and below N/2 = %d/2", ErrInvalid, p.K, n)
		}
		return [][]int{{2}}, nil
	},
	units: func(in, _ [][]int, p EmbeddingQualityParams) uint64 {
		N, D, E, K := uint64(in[0][0]), uint64(in[0][1]), uint64(in[1][1]), uint64(p.K)
		units := CallUnits + (3*D+3*E+2*affinitySelectUnits)*N*(N-1) + 4*N*K
		return units + 4*N*(D+E) + 8
	},
	// Each point's neighbours in the embedding and their distances in the
	// data, per point being ranked: 12 bytes a neighbour, and the labels.
	scratch: func(in, _ [][]int, p EmbeddingQualityParams) int64 {
		n := int64(in[0][0])
		return 12*n*int64(p.K) + 4*n
	},
})

// EmbeddingQuality returns the trustworthiness of embedding y of data x
// at p.K, and the k-NN label accuracy in y (NaN when labels is nil).
func (s *Session) EmbeddingQuality(ctx context.Context, x, y, labels *Tensor, p EmbeddingQualityParams) (trust, accuracy float32, err error) {
	out, err := s.run1(ctx, EmbeddingQuality, p, x, y, labels)
	if err != nil {
		return 0, 0, err
	}
	defer s.Free(out)
	q, err := s.Float32(out)
	if err != nil {
		return 0, 0, err
	}
	return q[0], q[1], nil
}

// finiteChunk is how many values the finiteness check reads at a time.
const finiteChunk = 1 << 16

// verifyFinite refuses NaN and infinite values in the op's checked f32
// inputs, streaming them in chunks so that it needs little memory and stops
// promptly when ctx ends.
func verifyFinite(op *Op) func(context.Context, []*Tensor, any, func(*Tensor, int, []byte) error) error {
	return func(ctx context.Context, in []*Tensor, _ any, read func(*Tensor, int, []byte) error) error {
		buf := make([]byte, 4*finiteChunk)
		for i, spec := range op.Inputs {
			if !spec.Checked || in[i] == nil {
				continue
			}
			t := in[i]
			for first := 0; first < t.Len(); first += finiteChunk {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted checking %s: %w", spec.Name, err)
				}
				b := buf[:4*min(finiteChunk, t.Len()-first)]
				if err := read(t, first, b); err != nil {
					return fmt.Errorf("read %s: %w", spec.Name, err)
				}
				for j := 0; j < len(b); j += 4 {
					if binary.LittleEndian.Uint32(b[j:])&0x7f800000 == 0x7f800000 {
						v := math.Float32frombits(binary.LittleEndian.Uint32(b[j:]))
						return fmt.Errorf("%w: %s holds %v at element %d", ErrInvalid, spec.Name, v, first+j/4)
					}
				}
			}
		}
		return nil
	}
}

func init() {
	TSNEAffinities.verify = verifyFinite(TSNEAffinities)
	EmbeddingQuality.verify = verifyFinite(EmbeddingQuality)
}
