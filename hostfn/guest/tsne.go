//go:build wasip1

package guest

import (
	"math"
	"unsafe"
)

// TSNEAffinities computes t-SNE's input affinities P from data x [N,D] at
// the perplexity, in the CSR form TSNEStep takes (docs/abi.md,
// "tsne_affinities"). NNZ reads how many entries are used.
func TSNEAffinities(x Tensor, perplexity float32) (TSNEState, error) {
	var outs [3]uint32
	mu.Lock()
	scratch.words[0], scratch.words[1] = math.Float32bits(perplexity), 0
	errno := tsneAffinities(x.handle, unsafe.Pointer(&scratch.words), &outs[0], &outs[1], &outs[2])
	mu.Unlock()
	if err := check("tsne_affinities", errno); err != nil {
		return TSNEState{}, err
	}
	return TSNEState{RowPtr: Tensor{outs[0]}, Cols: Tensor{outs[1]}, Vals: Tensor{outs[2]}}, nil
}

// NNZ returns the number of entries of P in use: row_ptr's last value.
func (s TSNEState) NNZ() (int, error) {
	n, err := s.RowPtr.Len()
	if err != nil {
		return 0, err
	}
	var last [1]int32
	if err := s.RowPtr.ReadInt32(n-1, last[:]); err != nil {
		return 0, err
	}
	return int(last[0]), nil
}

// EmbeddingQuality returns the trustworthiness at k of embedding y [N,E] of
// data x [N,D], and the accuracy of a k-nearest-neighbour vote of labels
// i32[N] in y (NaN when labels is the zero Tensor).
func EmbeddingQuality(x, y, labels Tensor, k int) (trust, accuracy float32, err error) {
	out, err := produce("embedding_quality", func(out *uint32) uint32 {
		scratch.words[0] = uint32(k)
		return embeddingQuality(x.handle, y.handle, labels.handle, unsafe.Pointer(&scratch.words), out)
	})
	if err != nil {
		return 0, 0, err
	}
	defer out.Free()
	var q [2]float32
	if err := out.ReadFloat32(0, q[:]); err != nil {
		return 0, 0, err
	}
	return q[0], q[1], nil
}
