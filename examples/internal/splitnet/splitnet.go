// Package splitnet is the client's side of split learning on the seed's
// MNIST network (examples/internal/mnistnet): the client computes the two
// convolutional layers itself and sends the node only their activations
// and the labels; an actor on the node (examples/split-dense) holds the
// dense layers, trains them across calls, and answers with the gradient of
// the loss with respect to those activations. This package computes the
// client's layers in plain Go, the oracle for examples/split-dense/split.js,
// and encodes and decodes the actor's payloads and replies.
//
// The formats are those of examples/split-dense's package comment: packed,
// little-endian, f32 IEEE 754 binary32.
package splitnet

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/mnist"
)

// Sizes.
const (
	// Pixels is the values of one image: 28×28, in [0, 1].
	Pixels = mnistnet.Side * mnistnet.Side
	// Flat is the activations of one image the client sends: the second
	// max-pool's output [32, 7, 7], flattened in that order.
	Flat = mnistnet.Flat
	// ConvLen is the values of the client's weights, in the order conv1.w
	// [16,1,5,5], conv1.b [16], conv2.w [32,16,5,5], conv2.b [32].
	ConvLen = mnistnet.Conv1*mnistnet.Kernel*mnistnet.Kernel + mnistnet.Conv1 +
		mnistnet.Conv2*mnistnet.Conv1*mnistnet.Kernel*mnistnet.Kernel + mnistnet.Conv2
	// MaxBatch is the most images the actor takes in one call.
	MaxBatch = 256
)

// Defaults of the actor.
const (
	// DefaultSeed draws the dense layers when init gets no seed. With it,
	// the actor's layers are those of mnistnet.Init(DefaultSeed).
	DefaultSeed = 1
	// DefaultLR is the learning rate of a train payload whose lr is 0.
	DefaultLR = 0.05
	// Momentum is the momentum of the actor's SGD steps.
	Momentum = 0.9
)

// ConvWeights concatenates the first four of mnistnet.Params, the
// convolutions' weights and biases, from ts (a checkpoint, or
// mnistnet.Init), into the ConvLen values Features takes.
func ConvWeights(ts []mnist.Tensor) ([]float32, error) {
	if err := mnistnet.Check(ts); err != nil {
		return nil, fmt.Errorf("conv weights: %w", err)
	}
	w := make([]float32, 0, ConvLen)
	for _, t := range ts[:4] {
		w = append(w, t.Data...)
	}
	return w, nil
}

// ConvBytes encodes the conv weights as a file of them holds them, for a
// page's split.js (convFromBytes): the ConvLen values as f32, little-endian.
func ConvBytes(conv []float32) []byte {
	b := make([]byte, 0, 4*len(conv))
	for _, v := range conv {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// Features computes the client's layers for batch images of Pixels values
// each (pixels/255, as mnistnet.Pixels makes them) with the conv weights
// conv (ConvLen values, as ConvWeights lays them out):
//
//	conv 5×5 (16, padding 2) → relu → max-pool 2×2 (stride 2) →
//	conv 5×5 (32, padding 2) → relu → max-pool 2×2 (stride 2)
//
// and returns batch×Flat activations, each image's [32, 7, 7] in that order.
// A convolution is a cross-correlation, y[o,i,j] = b[o] + Σ_c Σ_u Σ_v
// w[o,c,u,v]·x[c, i+u-2, j+v-2], with x zero outside the image; each sum
// runs over c, u, v in that order in float64, from 0, then adds the bias
// and rounds once to float32. It panics if the lengths do not fit.
func Features(conv, images []float32, batch int) []float32 {
	if len(conv) != ConvLen || batch < 0 || len(images) != batch*Pixels {
		panic(fmt.Sprintf("splitnet: Features of %d conv weights and %d pixels for %d images", len(conv), len(images), batch))
	}
	const k, side, half = mnistnet.Kernel, mnistnet.Side, mnistnet.Side / 2
	c1, c2 := mnistnet.Conv1, mnistnet.Conv2
	w1, conv := conv[:c1*k*k], conv[c1*k*k:]
	b1, conv := conv[:c1], conv[c1:]
	w2, b2 := conv[:c2*c1*k*k], conv[c2*c1*k*k:]

	out := make([]float32, batch*Flat)
	a1 := make([]float32, c1*side*side)
	p1 := make([]float32, c1*half*half)
	a2 := make([]float32, c2*half*half)
	for n := range batch {
		convRelu(a1, images[n*Pixels:(n+1)*Pixels], w1, b1, 1, c1, side)
		maxPool(p1, a1, c1, side)
		convRelu(a2, p1, w2, b2, c1, c2, half)
		maxPool(out[n*Flat:(n+1)*Flat], a2, c2, half)
	}
	return out
}

// convRelu sets y [oc, side, side] to relu(conv(x [ic, side, side], w
// [oc, ic, 5, 5]) + b), padded to keep the size.
func convRelu(y, x, w, b []float32, ic, oc, side int) {
	const k, pad = mnistnet.Kernel, mnistnet.Pad
	for o := range oc {
		for i := range side {
			for j := range side {
				var sum float64
				for c := range ic {
					for u := range k {
						r := i + u - pad
						if r < 0 || r >= side {
							continue
						}
						for v := range k {
							s := j + v - pad
							if s < 0 || s >= side {
								continue
							}
							sum += float64(w[((o*ic+c)*k+u)*k+v]) * float64(x[(c*side+r)*side+s])
						}
					}
				}
				y[(o*side+i)*side+j] = max(float32(sum+float64(b[o])), 0)
			}
		}
	}
}

// maxPool sets y [ch, side/2, side/2] to the maxima of the 2×2 windows,
// stride 2, of x [ch, side, side].
func maxPool(y, x []float32, ch, side int) {
	h := side / 2
	for c := range ch {
		for i := range h {
			for j := range h {
				at := func(r, s int) float32 { return x[(c*side+2*i+r)*side+2*j+s] }
				y[(c*h+i)*h+j] = max(at(0, 0), at(0, 1), at(1, 0), at(1, 1))
			}
		}
	}
}

// InitPayload is init's payload: the seed that draws the dense layers.
func InitPayload(seed uint64) []byte { return binary.LittleEndian.AppendUint64(nil, seed) }

// TrainPayload is train's payload: u32 B, f32 lr (0 takes DefaultLR), B×Flat
// f32 activations, B i32 labels. B is len(labels); it panics unless acts
// holds B×Flat values.
func TrainPayload(acts []float32, labels []int32, lr float32) []byte {
	return batchPayload(acts, labels, &lr)
}

// EvalPayload is eval's payload: u32 B, B×Flat f32 activations, B i32
// labels.
func EvalPayload(acts []float32, labels []int32) []byte { return batchPayload(acts, labels, nil) }

func batchPayload(acts []float32, labels []int32, lr *float32) []byte {
	if len(acts) != len(labels)*Flat {
		panic(fmt.Sprintf("splitnet: %d activations for %d labels", len(acts), len(labels)))
	}
	b := make([]byte, 0, 8+4*len(acts)+4*len(labels))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(labels)))
	if lr != nil {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(*lr))
	}
	for _, v := range acts {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, l := range labels {
		b = binary.LittleEndian.AppendUint32(b, uint32(l))
	}
	return b
}

// TrainReply is train's reply.
type TrainReply struct {
	Loss    float32 // the batch's mean cross-entropy, before the step
	Correct uint32  // images whose largest logit is their label's
	Steps   uint32  // steps taken since init, this one included
	// Grad is the gradient of Loss with respect to the activations,
	// B×Flat values.
	Grad []float32
}

// DecodeTrainReply decodes train's reply: f32 loss, u32 correct, u32
// steps, then B×Flat f32 gradient, B taken from the length.
func DecodeTrainReply(b []byte) (TrainReply, error) {
	if len(b) < 12 || (len(b)-12)%(4*Flat) != 0 {
		return TrainReply{}, fmt.Errorf("train reply of %d bytes: want 12 + B×%d", len(b), 4*Flat)
	}
	r := TrainReply{
		Loss:    math.Float32frombits(binary.LittleEndian.Uint32(b)),
		Correct: binary.LittleEndian.Uint32(b[4:]),
		Steps:   binary.LittleEndian.Uint32(b[8:]),
		Grad:    make([]float32, (len(b)-12)/4),
	}
	for i := range r.Grad {
		r.Grad[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[12+4*i:]))
	}
	return r, nil
}

// EvalReply is eval's reply.
type EvalReply struct {
	Loss    float32
	Correct uint32
}

// DecodeEvalReply decodes eval's reply: f32 loss, u32 correct.
func DecodeEvalReply(b []byte) (EvalReply, error) {
	if len(b) != 8 {
		return EvalReply{}, fmt.Errorf("eval reply of %d bytes: want 8", len(b))
	}
	return EvalReply{Loss: math.Float32frombits(binary.LittleEndian.Uint32(b)), Correct: binary.LittleEndian.Uint32(b[4:])}, nil
}

// Stats is stats' reply: the training since init.
type Stats struct {
	Steps    uint32
	Examples uint64  // images trained on
	Correct  uint64  // of them, classified right before their step
	LossSum  float64 // Σ over steps of B × the batch's mean loss
}

// MeanLoss is the mean loss per image trained on; 0 before any.
func (s Stats) MeanLoss() float64 {
	if s.Examples == 0 {
		return 0
	}
	return s.LossSum / float64(s.Examples)
}

// DecodeStats decodes stats' reply: u32 steps, u64 examples, u64 correct,
// f64 loss sum.
func DecodeStats(b []byte) (Stats, error) {
	if len(b) != 28 {
		return Stats{}, fmt.Errorf("stats reply of %d bytes: want 28", len(b))
	}
	return Stats{
		Steps:    binary.LittleEndian.Uint32(b),
		Examples: binary.LittleEndian.Uint64(b[4:]),
		Correct:  binary.LittleEndian.Uint64(b[12:]),
		LossSum:  math.Float64frombits(binary.LittleEndian.Uint64(b[20:])),
	}, nil
}
