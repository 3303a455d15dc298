//go:build wasip1

package guest

import (
	"fmt"
	"math"
	"unsafe"
)

// The training operations: gradients, the loss and optimiser steps
// (docs/abi.md, "Training"). A dense layer's gradients are MatMul with
// TransA or TransB, and a bias gradient is ReduceSum.

// Conv2DBackwardDataParams are a convolution's parameters and its input's
// height and width.
type Conv2DBackwardDataParams struct {
	Conv2DParams
	InputH, InputW uint32
}

// Conv2DBackwardData returns the gradient of a convolution's input from the
// gradient dy [N,OC,OH,OW] of its output and its weights w.
func Conv2DBackwardData(dy, w Tensor, p Conv2DBackwardDataParams) (Tensor, error) {
	return produce("conv2d_backward_data", func(out *uint32) uint32 {
		return conv2dBackwardData(dy.handle, w.handle, paramWords(p), out)
	})
}

// Conv2DBackwardFilterParams are a convolution's parameters and its
// kernel's height and width.
type Conv2DBackwardFilterParams struct {
	Conv2DParams
	KernelH, KernelW uint32
}

// Conv2DBackwardFilter returns the gradient of a convolution's weights from
// its input x and the gradient dy of its output.
func Conv2DBackwardFilter(x, dy Tensor, p Conv2DBackwardFilterParams) (Tensor, error) {
	return produce("conv2d_backward_filter", func(out *uint32) uint32 {
		return conv2dBackwardFilter(x.handle, dy.handle, paramWords(p), out)
	})
}

// MaxPool2DBackward returns the gradient of a max-pool's input x from the
// gradient dy of its output, for the window p of the forward call.
func MaxPool2DBackward(x, dy Tensor, p Pool2DParams) (Tensor, error) {
	return produce("maxpool2d_backward", func(out *uint32) uint32 {
		return maxpool2dBackward(x.handle, dy.handle, paramWords(p), out)
	})
}

// ReluBackward returns the gradient of relu's input x from the gradient dy
// of its output.
func ReluBackward(x, dy Tensor) (Tensor, error) {
	return produce("relu_backward", func(out *uint32) uint32 { return reluBackward(x.handle, dy.handle, out) })
}

// ReduceSum returns the sum of x over the given axes, which leave the shape.
func ReduceSum(x Tensor, axes ...int) (Tensor, error) {
	var mask uint32
	for _, a := range axes {
		if a < 0 || a >= 32 {
			return Tensor{}, fmt.Errorf("reduce_sum: axis %d", a)
		}
		mask |= 1 << a
	}
	return produce("reduce_sum", func(out *uint32) uint32 { return reduceSum(x.handle, mask, out) })
}

// SoftmaxCrossEntropy returns the gradient of the mean cross-entropy of
// softmax(logits) [N,K] against labels i32 [N] with respect to the logits,
// and the mean cross-entropy.
func SoftmaxCrossEntropy(logits, labels Tensor) (Tensor, float32, error) {
	mu.Lock()
	errno := softmaxCrossEntropy(logits.handle, labels.handle, &scratch.handle, &scratch.kl)
	h, loss := scratch.handle, scratch.kl
	mu.Unlock()
	if err := check("softmax_cross_entropy", errno); err != nil {
		return Tensor{}, 0, err
	}
	return Tensor{h}, loss, nil
}

// SGDParams are a step of SGD with momentum.
type SGDParams struct {
	LearningRate, Momentum float32
}

// SGDMomentum updates w and velocity in place: velocity = momentum·velocity
// + grad, w = w - learning_rate·velocity.
func SGDMomentum(w, grad, velocity Tensor, p SGDParams) error {
	mu.Lock()
	errno := sgdMomentum(w.handle, grad.handle, velocity.handle, paramWords(p))
	mu.Unlock()
	return check("sgd_momentum", errno)
}

// AdamParams are a step of Adam. Correction1 and Correction2 are 1-β1^t and
// 1-β2^t for step t = 1, 2, …; AdamCorrections computes them.
type AdamParams struct {
	LearningRate, Beta1, Beta2, Epsilon float32
	Correction1, Correction2            float32
}

// AdamCorrections returns 1-β^t, with β^t computed in float64 and rounded
// once, so that every guest computes the same bits.
func AdamCorrections(beta1, beta2 float32, step int) (c1, c2 float32) {
	return float32(1 - math.Pow(float64(beta1), float64(step))), float32(1 - math.Pow(float64(beta2), float64(step)))
}

// Adam updates w and the moments m and v in place from grad.
func Adam(w, grad, m, v Tensor, p AdamParams) error {
	mu.Lock()
	errno := adam(w.handle, grad.handle, m.handle, v.handle, paramWords(p))
	mu.Unlock()
	return check("adam", errno)
}

// paramWords copies a parameter struct of u32 and f32 fields into the
// shared scratch words and returns their address. The callers hold mu or
// call inside produce, which does.
func paramWords[P any](p P) unsafe.Pointer {
	size := unsafe.Sizeof(p)
	if size > unsafe.Sizeof(scratch.words) {
		panic("parameter struct larger than its scratch")
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&scratch.words)), size), unsafe.Slice((*byte)(unsafe.Pointer(&p)), size))
	return unsafe.Pointer(&scratch.words)
}
