package splitnet_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/examples/internal/splitnet"
	"github.com/accelnode/accelnode/mnist"
)

// FeaturesTolerance bounds the difference between splitnet.Features and
// the node's conv2d, relu and maxpool2d, relative to the largest activation
// of the batch: the node sums each output in float32 in the contract's
// order, Features in float64, so they differ by a few float32 roundings of
// a sum of up to 400 terms: 5e-7 measured on MNIST digits, 1e-5 allowed.
const FeaturesTolerance = 1e-5

// images returns n test images: the first n digits of MNIST's training set
// where make deps has fetched it, else strokes drawn from seed, in [0, 1]
// with most pixels 0 as in the digits.
func images(t *testing.T, n int, seed uint64) []float32 {
	x := make([]float32, n*splitnet.Pixels)
	if dir, err := mnist.FindDir("."); err == nil {
		set, err := mnist.LoadFirst(dir, "train", n)
		if err != nil {
			t.Fatal(err)
		}
		mnistnet.Pixels(x, set.Images)
		return x
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	for i := range x {
		if rng.IntN(4) == 0 {
			x[i] = float32(rng.IntN(256)) / 255
		}
	}
	return x
}

// nodeFeatures computes the client's layers with the node's own kernels:
// the ref backend's conv2d, relu and maxpool2d in strict mode.
func nodeFeatures(t *testing.T, conv, x []float32, batch int) []float32 {
	t.Helper()
	s, err := accel.NewSession(ref.New(2), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	must := func(tt *accel.Tensor, err error) *accel.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	const k, c1, c2 = mnistnet.Kernel, mnistnet.Conv1, mnistnet.Conv2
	w1 := must(s.FromFloat32(conv[:c1*k*k], c1, 1, k, k))
	conv = conv[c1*k*k:]
	b1 := must(s.FromFloat32(conv[:c1], c1))
	conv = conv[c1:]
	w2 := must(s.FromFloat32(conv[:c2*c1*k*k], c2, c1, k, k))
	b2 := must(s.FromFloat32(conv[c2*c1*k*k:], c2))
	cp := accel.Conv2DParams{StrideH: 1, StrideW: 1, DilationH: 1, DilationW: 1, Groups: 1,
		PadTop: mnistnet.Pad, PadLeft: mnistnet.Pad, PadBottom: mnistnet.Pad, PadRight: mnistnet.Pad}
	pp := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}

	in := must(s.FromFloat32(x, batch, 1, mnistnet.Side, mnistnet.Side))
	y := must(s.Conv2D(ctx, in, w1, b1, cp))
	y = must(s.Relu(ctx, y))
	y = must(s.MaxPool2D(ctx, y, pp))
	y = must(s.Conv2D(ctx, y, w2, b2, cp))
	y = must(s.Relu(ctx, y))
	y = must(s.MaxPool2D(ctx, y, pp))
	out, err := s.Float32(y)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compare returns the largest difference between got and want relative to
// want's largest magnitude, and how many values agree bit for bit.
func compare(got, want []float32) (rel float64, same int) {
	scale := 1e-30
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	for i := range got {
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			same++
		}
		rel = math.Max(rel, math.Abs(float64(got[i])-float64(want[i]))/scale)
	}
	return rel, same
}

func TestFeaturesMatchNode(t *testing.T) {
	const batch = 6
	x := images(t, batch, 1)
	for _, seed := range []uint64{1, 7} {
		conv, err := splitnet.ConvWeights(mnistnet.Init(seed))
		if err != nil {
			t.Fatal(err)
		}
		// Biases of zero would hide a bias added twice or not at all.
		rng := rand.New(rand.NewPCG(seed, 3))
		for _, r := range [][2]int{{400, 416}, {13216, 13248}} {
			for i := r[0]; i < r[1]; i++ {
				conv[i] = float32(rng.NormFloat64() * 0.1)
			}
		}
		got := splitnet.Features(conv, x, batch)
		want := nodeFeatures(t, conv, x, batch)
		if len(got) != batch*splitnet.Flat || len(want) != len(got) {
			t.Fatalf("seed %d: %d features, node %d, want %d", seed, len(got), len(want), batch*splitnet.Flat)
		}
		rel, same := compare(got, want)
		t.Logf("seed %d: %d of %d activations bit-identical to the node's, max difference %.2g of the largest", seed, same, len(got), rel)
		if rel > FeaturesTolerance {
			t.Errorf("seed %d: Features differs from the node's conv2d/relu/maxpool2d by %.3g of the largest activation, more than %g", seed, rel, FeaturesTolerance)
		}
		if zero := slices.IndexFunc(got, func(v float32) bool { return v != 0 }); zero < 0 {
			t.Errorf("seed %d: every activation is 0", seed)
		}
	}
}

// TestFeaturesImageOrder checks that each image's activations depend on
// that image alone: a batch's features are those of its images one by one.
func TestFeaturesImageOrder(t *testing.T) {
	conv, _ := splitnet.ConvWeights(mnistnet.Init(3))
	x := images(t, 3, 4)
	all := splitnet.Features(conv, x, 3)
	for n := range 3 {
		one := splitnet.Features(conv, x[n*splitnet.Pixels:(n+1)*splitnet.Pixels], 1)
		if !slices.Equal(one, all[n*splitnet.Flat:(n+1)*splitnet.Flat]) {
			t.Errorf("image %d: its features in a batch differ from its own", n)
		}
	}
}

func TestPayloads(t *testing.T) {
	acts := make([]float32, 2*splitnet.Flat)
	for i := range acts {
		acts[i] = float32(i) / 7
	}
	labels := []int32{3, 9}
	p := splitnet.TrainPayload(acts, labels, 0.25)
	if len(p) != 8+4*len(acts)+8 {
		t.Fatalf("train payload of %d bytes", len(p))
	}
	if p[0] != 2 || p[1]|p[2]|p[3] != 0 || math.Float32frombits(uint32(p[4])|uint32(p[5])<<8|uint32(p[6])<<16|uint32(p[7])<<24) != 0.25 {
		t.Errorf("train payload header % x", p[:8])
	}
	if tail := p[len(p)-8:]; !slices.Equal(tail, []byte{3, 0, 0, 0, 9, 0, 0, 0}) {
		t.Errorf("labels encoded as % x", tail)
	}
	e := splitnet.EvalPayload(acts, labels)
	if !slices.Equal(e[:4], p[:4]) || !slices.Equal(e[4:], p[8:]) {
		t.Error("eval payload is not train's without the learning rate")
	}

	// A reply as the actor writes it decodes to its fields.
	reply := []byte{0, 0, 0x80, 0x3f, 5, 0, 0, 0, 7, 0, 0, 0}
	for i := range splitnet.Flat {
		v := math.Float32bits(float32(-i))
		reply = append(reply, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	r, err := splitnet.DecodeTrainReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	if r.Loss != 1 || r.Correct != 5 || r.Steps != 7 || len(r.Grad) != splitnet.Flat || r.Grad[10] != -10 {
		t.Errorf("decoded %v, %d, %d, %d values (g[10] %v)", r.Loss, r.Correct, r.Steps, len(r.Grad), r.Grad[10])
	}
	if _, err := splitnet.DecodeTrainReply(reply[:len(reply)-4]); err == nil {
		t.Error("a truncated train reply decoded")
	}
	if _, err := splitnet.DecodeEvalReply(reply[:9]); err == nil {
		t.Error("an eval reply of 9 bytes decoded")
	}
	st, err := splitnet.DecodeStats(append([]byte{2, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0}, 0, 0, 0, 0, 0, 0, 0x40, 0x40))
	if err != nil {
		t.Fatal(err)
	}
	if st.Steps != 2 || st.Examples != 64 || st.Correct != 40 || st.LossSum != 32 || st.MeanLoss() != 0.5 {
		t.Errorf("decoded stats %+v", st)
	}
}
