//go:build wasip1

package guest

import "unsafe"

// The raw imports of docs/abi.md. Every one returns an errno.

//go:wasmimport accel tensor_create
func tensorCreate(dtype uint32, shape unsafe.Pointer, rank uint32, out *uint32) uint32

//go:wasmimport accel tensor_info
func tensorInfo(handle uint32, info unsafe.Pointer) uint32

//go:wasmimport accel tensor_write
func tensorWrite(handle, first uint32, src unsafe.Pointer, count uint32) uint32

//go:wasmimport accel tensor_read
func tensorRead(handle, first uint32, dst unsafe.Pointer, count uint32) uint32

//go:wasmimport accel tensor_reshape
func tensorReshape(handle uint32, shape unsafe.Pointer, rank uint32) uint32

//go:wasmimport accel tensor_free
func tensorFree(handle uint32) uint32

//go:wasmimport accel matmul
func matmul(a, b, flags uint32, out *uint32) uint32

//go:wasmimport accel conv2d
func conv2d(x, w, bias uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel add_bias
func addBias(x, bias, axis uint32, out *uint32) uint32

//go:wasmimport accel relu
func relu(x uint32, out *uint32) uint32

//go:wasmimport accel maxpool2d
func maxpool2d(x uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel softmax
func softmax(x uint32, out *uint32) uint32

//go:wasmimport accel tsne_step
func tsneStep(rowPtr, cols, vals, y, update, gains uint32, params unsafe.Pointer, kl *float32) uint32

//go:wasmimport accel tsne_affinities
func tsneAffinities(x uint32, params unsafe.Pointer, rowPtr, cols, vals *uint32) uint32

//go:wasmimport accel embedding_quality
func embeddingQuality(x, y, labels uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel add
func add(a, b uint32, out *uint32) uint32

//go:wasmimport accel conv2d_backward_data
func conv2dBackwardData(dy, w uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel conv2d_backward_filter
func conv2dBackwardFilter(x, dy uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel maxpool2d_backward
func maxpool2dBackward(x, dy uint32, params unsafe.Pointer, out *uint32) uint32

//go:wasmimport accel relu_backward
func reluBackward(x, dy uint32, out *uint32) uint32

//go:wasmimport accel reduce_sum
func reduceSum(x, axes uint32, out *uint32) uint32

//go:wasmimport accel softmax_cross_entropy
func softmaxCrossEntropy(logits, labels uint32, out *uint32, loss *float32) uint32

//go:wasmimport accel sgd_momentum
func sgdMomentum(w, grad, velocity uint32, params unsafe.Pointer) uint32

//go:wasmimport accel adam
func adam(w, grad, m, v uint32, params unsafe.Pointer) uint32

//go:wasmimport accel info
func info(buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32

//go:wasmimport accel units
func units(out unsafe.Pointer) uint32

//go:wasmimport accel last_error
func lastError(buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32

//go:wasmimport accel model_open
func modelOpen(name unsafe.Pointer, nameLen uint32, out *uint32) uint32

//go:wasmimport accel model_info
func modelInfo(model uint32, buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32

//go:wasmimport accel model_run
func modelRun(model uint32, inputs unsafe.Pointer, nInputs uint32, outputs unsafe.Pointer, nOutputs uint32) uint32
