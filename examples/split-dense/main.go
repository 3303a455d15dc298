//go:build wasip1

// Command split-dense is the node's side of split learning on the seed's
// MNIST network (examples/internal/mnistnet): an actor that holds the
// dense layers (dense1 1568→128 + relu, dense2 128→10) and trains them
// across calls, while the client computes the two convolutional layers
// itself and sends only their activations, the second max-pool's output
// [B, 32, 7, 7], and the labels. It answers with the gradient of the loss
// with respect to those activations, for the client to train its own
// layers with, and the loss and accuracy, for it to show.
//
// The weights, biases and momentum live in tensors on the node's backend
// (on the GPU where it is one) between calls; every forward and backward
// step and the optimiser's are host calls, and the guest itself only
// checks payloads, counts right answers and encodes replies. Run it in
// strict mode and every replica computes the same bits. (cuda does not
// serve the training operations yet and refuses them with EUNSUPPORTED:
// on a GPU node, start the actor on ref.) Build it as a reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o split-dense.wasm ./examples/split-dense
//
// Methods. Payloads and replies are packed and little-endian; f32 is IEEE
// 754 binary32; B, the batch, is 1 to 256 images:
//
//	init   payload: nothing, or u64 seed (default 1). Draws the dense layers
//	       as mnistnet.Init(seed) does (He init, zero biases), zeroes the
//	       momentum and the counters. Reply: the node's info JSON, which
//	       names the backend and the determinism mode.
//	train  payload: u32 B, f32 lr (0 takes 0.05), B×1568 f32 activations,
//	       B i32 labels in [0, 10). One step of SGD with momentum 0.9 on
//	       the batch's mean cross-entropy. Reply: f32 loss, u32 correct,
//	       u32 steps (since init, this one included), then B×1568 f32: the
//	       gradient of the loss with respect to the activations. The loss,
//	       the correct count (argmax of the logits == label) and the
//	       gradient are those of the weights before the step.
//	eval   payload: u32 B, B×1568 f32 activations, B i32 labels. Reply:
//	       f32 loss, u32 correct.
//	stats  reply: u32 steps, u64 images trained on, u64 of them right, f64
//	       Σ over steps of B × the batch's mean loss.
//
// train and eval before init start from the default seed. A method returns
// 0 on success; a payload that does not fit returns 3 (EINVAL) and a
// failed host call its errno, each with the reason as the reply; the
// weights, momentum and counters stay as they were. A host call that fails
// once the update has begun traps instead, so that the node returns the
// actor to its state before the call. Each call clears the memory it used
// for payloads and replies: the node saves the memory that is not zero
// after every call.
//
// examples/internal/splitnet and split.js encode and decode these formats
// for Go and the browser.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/hostfn/guest"
)

const (
	flat        = mnistnet.Flat
	classes     = mnistnet.Classes
	maxBatch    = 256
	defaultSeed = 1
	defaultLR   = 0.05
	momentum    = 0.9
)

// dense are the first of mnistnet.Params that the actor holds: dense1.w,
// dense1.b, dense2.w, dense2.b.
const dense = 4

var (
	ready    bool
	params   [4]guest.Tensor // dense1.w [1568,128], dense1.b, dense2.w [128,10], dense2.b
	velocity [4]guest.Tensor // SGD's momentum, one per parameter

	steps           uint32
	examples, right uint64
	lossSum         float64
	logits          [maxBatch * classes]float32
)

// badPayload is a payload that does not fit the method.
type badPayload string

func (e badPayload) Error() string { return string(e) }

// code replies with err's reason and returns the method's code: EINVAL for
// a bad payload, the errno of a failed accel call.
func code(err error) int32 {
	guest.Reply([]byte(err.Error()))
	var bad badPayload
	var e *guest.Error
	switch {
	case errors.As(err, &bad):
		return int32(abi.EINVAL)
	case errors.As(err, &e):
		return int32(e.Errno)
	}
	return int32(abi.EINTERNAL)
}

func reply(b []byte) int32 {
	if err := guest.Reply(b); err != nil {
		return code(err)
	}
	return 0
}

//go:wasmexport init
func initMethod() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return code(err)
	}
	seed := uint64(defaultSeed)
	switch len(in) {
	case 0:
	case 8:
		seed = binary.LittleEndian.Uint64(in)
	default:
		return code(badPayload(fmt.Sprintf("init takes nothing or a u64 seed, not %d bytes", len(in))))
	}
	if err := start(seed); err != nil {
		return code(err)
	}
	info, err := guest.Info()
	if err != nil {
		return code(err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return code(err)
	}
	return reply(b)
}

// start draws the dense layers from seed and zeroes the momentum and the
// counters, replacing the tensors of an earlier start only once the new
// ones are made.
func start(seed uint64) error {
	var p, v [4]guest.Tensor
	all := mnistnet.Init(seed)
	defer func() {
		for _, t := range all {
			clear(t.Data)
		}
	}()
	for i, t := range all[dense:] {
		var err error
		if p[i], err = guest.FromFloat32(t.Data, t.Shape...); err == nil {
			v[i], err = guest.New(guest.F32, t.Shape...)
		}
		if err != nil {
			guest.FreeAll(append(p[:], v[:]...)...)
			return err
		}
	}
	if ready {
		guest.FreeAll(append(params[:], velocity[:]...)...)
	}
	params, velocity, ready = p, v, true
	steps, examples, right, lossSum = 0, 0, 0, 0
	return nil
}

//go:wasmexport train
func train() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return code(err)
	}
	defer clear(in)
	b, err := parse(in, true)
	if err != nil {
		return code(err)
	}
	if !ready {
		if err := start(defaultSeed); err != nil {
			return code(err)
		}
	}
	r, err := step(b, true)
	if err != nil {
		return code(err)
	}
	steps++
	examples += uint64(b.n)
	right += uint64(r.correct)
	lossSum += float64(r.loss) * float64(b.n)

	out := make([]byte, 12, 12+4*len(r.grad))
	binary.LittleEndian.PutUint32(out, math.Float32bits(r.loss))
	binary.LittleEndian.PutUint32(out[4:], uint32(r.correct))
	binary.LittleEndian.PutUint32(out[8:], steps)
	for _, g := range r.grad {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(g))
	}
	defer clear(out)
	defer clear(r.grad)
	return reply(out)
}

//go:wasmexport eval
func eval() int32 {
	in, err := guest.CallInput()
	if err != nil {
		return code(err)
	}
	defer clear(in)
	b, err := parse(in, false)
	if err != nil {
		return code(err)
	}
	if !ready {
		if err := start(defaultSeed); err != nil {
			return code(err)
		}
	}
	r, err := step(b, false)
	if err != nil {
		return code(err)
	}
	out := binary.LittleEndian.AppendUint32(nil, math.Float32bits(r.loss))
	return reply(binary.LittleEndian.AppendUint32(out, uint32(r.correct)))
}

//go:wasmexport stats
func stats() int32 {
	out := binary.LittleEndian.AppendUint32(nil, steps)
	out = binary.LittleEndian.AppendUint64(out, examples)
	out = binary.LittleEndian.AppendUint64(out, right)
	return reply(binary.LittleEndian.AppendUint64(out, math.Float64bits(lossSum)))
}

// batch is a decoded train or eval payload.
type batch struct {
	n      int
	lr     float32
	acts   []float32
	labels []int32
}

// parse decodes a train payload (withLR) or an eval payload, checking its
// length, the learning rate, the labels and that every activation is
// finite: one NaN would spoil the weights for good.
func parse(in []byte, withLR bool) (batch, error) {
	method, head := "eval", 4
	if withLR {
		method, head = "train", 8
	}
	if len(in) < head {
		return batch{}, badPayload(fmt.Sprintf("%s payload of %d bytes: it starts with a u32 batch size", method, len(in)))
	}
	n := binary.LittleEndian.Uint32(in)
	if n < 1 || n > maxBatch {
		return batch{}, badPayload(fmt.Sprintf("%s: batch of %d: want 1 to %d", method, n, maxBatch))
	}
	b := batch{n: int(n), lr: defaultLR}
	if want := head + 4*b.n*flat + 4*b.n; len(in) != want {
		return batch{}, badPayload(fmt.Sprintf("%s payload of %d bytes: a batch of %d takes %d", method, len(in), n, want))
	}
	if withLR {
		lr := math.Float32frombits(binary.LittleEndian.Uint32(in[4:]))
		switch {
		case lr != lr || lr < 0 || math.IsInf(float64(lr), 0):
			return batch{}, badPayload(fmt.Sprintf("train: learning rate %v: want a finite value, at least 0", lr))
		case lr > 0:
			b.lr = lr
		}
	}
	b.acts = make([]float32, b.n*flat)
	for i := range b.acts {
		v := math.Float32frombits(binary.LittleEndian.Uint32(in[head+4*i:]))
		if v != v || math.IsInf(float64(v), 0) {
			return batch{}, badPayload(fmt.Sprintf("%s: activation %d of image %d is %v", method, i%flat, i/flat, v))
		}
		b.acts[i] = v
	}
	b.labels = make([]int32, b.n)
	for i := range b.labels {
		l := int32(binary.LittleEndian.Uint32(in[head+4*b.n*flat+4*i:]))
		if l < 0 || l >= classes {
			return batch{}, badPayload(fmt.Sprintf("%s: label %d of image %d: want 0 to %d", method, l, i, classes-1))
		}
		b.labels[i] = l
	}
	return b, nil
}

// result is a batch's loss and right answers, and in training the
// gradient with respect to its activations.
type result struct {
	loss    float32
	correct int
	grad    []float32
}

// step runs the dense layers forward on b and, in training, backward, and
// takes one SGD step. The tensors it makes are freed before it returns.
func step(b batch, training bool) (res result, err error) {
	var temps []guest.Tensor
	defer func() { guest.FreeAll(temps...) }()
	keep := func(t guest.Tensor, e error) guest.Tensor {
		if e != nil && err == nil {
			err = e
		}
		temps = append(temps, t)
		return t
	}
	defer clear(b.acts)
	p := params
	x := keep(guest.FromFloat32(b.acts, b.n, flat))
	y := keep(guest.FromInt32(b.labels, b.n))
	// y = x·W + b for both layers, relu between.
	h := keep(guest.MatMul(x, p[0], 0))
	hb := keep(guest.AddBias(h, p[1], 1))
	hr := keep(guest.Relu(hb))
	l := keep(guest.MatMul(hr, p[2], 0))
	lb := keep(guest.AddBias(l, p[3], 1))
	if err != nil {
		return res, err
	}
	dlogits, loss, err := guest.SoftmaxCrossEntropy(lb, y)
	keep(dlogits, err)
	if err != nil {
		return res, err
	}
	res.loss = loss
	if res.correct, err = countCorrect(lb, b.labels); err != nil || !training {
		return res, err
	}

	// dW = xᵀ·dy, db = Σ_rows dy, dx = dy·Wᵀ.
	g := [4]guest.Tensor{}
	g[2] = keep(guest.MatMul(hr, dlogits, guest.TransA))
	g[3] = keep(guest.ReduceSum(dlogits, 0))
	dhr := keep(guest.MatMul(dlogits, p[2], guest.TransB))
	dh := keep(guest.ReluBackward(hb, dhr))
	g[0] = keep(guest.MatMul(x, dh, guest.TransA))
	g[1] = keep(guest.ReduceSum(dh, 0))
	dx := keep(guest.MatMul(dh, p[0], guest.TransB))
	if err != nil {
		return res, err
	}
	res.grad = make([]float32, b.n*flat)
	if err = dx.ReadFloat32(0, res.grad); err != nil {
		return res, err
	}

	// Nothing has changed so far; from here a failure would leave some
	// parameters stepped and others not, so it traps instead, and the
	// node rolls the call back.
	for i := range p {
		if err := guest.SGDMomentum(p[i], g[i], velocity[i], guest.SGDParams{LearningRate: b.lr, Momentum: momentum}); err != nil {
			panic(fmt.Sprintf("split-dense: step of %s: %v", mnistnet.Params[dense+i].Name, err))
		}
	}
	return res, nil
}

// countCorrect counts the images whose largest logit is their label's.
func countCorrect(lt guest.Tensor, labels []int32) (int, error) {
	v := logits[:len(labels)*classes]
	if err := lt.ReadFloat32(0, v); err != nil {
		return 0, err
	}
	correct := 0
	for i, want := range labels {
		row, best := v[i*classes:(i+1)*classes], 0
		for j, x := range row {
			if x > row[best] {
				best = j
			}
		}
		if best == int(want) {
			correct++
		}
	}
	clear(v)
	return correct, nil
}

func main() {}
