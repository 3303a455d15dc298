//go:build !wasip1

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/examples/internal/splitnet"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/store"
)

// actor is split-dense running as an actor of a node.
type actor struct {
	n         *node.Node
	owner, id string
}

// startActor starts split-dense as an actor of a node on ref in strict
// mode, with its store in a temporary directory.
func startActor(t *testing.T, spec node.ActorSpec) *actor {
	t.Helper()
	wasm := guesttest.BuildReactor(t, "github.com/accelnode/accelnode/examples/split-dense")
	ctx := context.Background()
	disk, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	n, err := node.Open(ctx, node.Config{Backend: "ref", Mode: accel.Strict, CacheDir: guesttest.CacheDir(),
		Actors: disk, SnapshotKey: [32]byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	spec.Owner, spec.Name = "split-dense test", "split-dense"
	info, err := n.StartActor(ctx, wasm, spec)
	if err != nil {
		t.Fatal(err)
	}
	return &actor{n: n, owner: spec.Owner, id: info.ID}
}

// raw calls method: its reply and code, or the error of a call that
// failed (a trap, say).
func (a *actor) raw(method string, payload []byte) ([]byte, uint32, error) {
	res, err := a.n.CallActor(context.Background(), a.owner, a.id, method, payload)
	return res.Reply, res.Code, err
}

// call calls method and fails t unless it returns code 0.
func (a *actor) call(t *testing.T, method string, payload []byte) []byte {
	t.Helper()
	reply, code, err := a.raw(method, payload)
	if err != nil || code != 0 {
		t.Fatalf("%s: code %d, %v: %s", method, code, err, reply)
	}
	return reply
}

func (a *actor) train(t *testing.T, acts []float32, labels []int32, lr float32) splitnet.TrainReply {
	t.Helper()
	r, err := splitnet.DecodeTrainReply(a.call(t, "train", splitnet.TrainPayload(acts, labels, lr)))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Grad) != len(acts) {
		t.Fatalf("train replied with %d gradient values for %d activations", len(r.Grad), len(acts))
	}
	return r
}

func (a *actor) eval(t *testing.T, acts []float32, labels []int32) splitnet.EvalReply {
	t.Helper()
	r, err := splitnet.DecodeEvalReply(a.call(t, "eval", splitnet.EvalPayload(acts, labels)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (a *actor) stats(t *testing.T) splitnet.Stats {
	t.Helper()
	s, err := splitnet.DecodeStats(a.call(t, "stats", nil))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// digits returns the features and labels of n MNIST digits of set from
// first, with the conv weights conv.
func digits(set *mnist.Set, conv []float32, first, n int) ([]float32, []int32) {
	x := make([]float32, n*splitnet.Pixels)
	labels := make([]int32, n)
	for i := range n {
		mnistnet.Pixels(x[i*splitnet.Pixels:(i+1)*splitnet.Pixels], set.Image(first+i))
		labels[i] = int32(set.Labels[first+i])
	}
	return splitnet.Features(conv, x, n), labels
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestActorTrains trains the dense layers through the actor for 30 steps
// on MNIST digits whose features come from untrained conv weights (those
// of mnistnet.Init, with which the network's dense layers are drawn too):
// random features still let the dense layers learn.
func TestActorTrains(t *testing.T) {
	dir, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err) // the message says to run make deps
	}
	const batch, steps = 32, 30
	train, err := mnist.LoadFirst(dir, "train", batch*steps)
	if err != nil {
		t.Fatal(err)
	}
	test, err := mnist.LoadFirst(dir, "t10k", 200)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := splitnet.ConvWeights(mnistnet.Init(splitnet.DefaultSeed))
	if err != nil {
		t.Fatal(err)
	}
	acts, labels := digits(train, conv, 0, batch*steps)
	testActs, testLabels := digits(test, conv, 0, 200)

	a := startActor(t, node.ActorSpec{})
	var info struct{ Backend, Mode string }
	if err := json.Unmarshal(a.call(t, "init", splitnet.InitPayload(splitnet.DefaultSeed)), &info); err != nil || info.Mode != "strict" {
		t.Fatalf("init replied %+v, %v: want the node's info in strict mode", info, err)
	}
	before := a.eval(t, testActs, testLabels)

	var losses, accs []float64
	var replies []splitnet.TrainReply
	correct := uint64(0)
	lossSum := 0.0
	for s := range steps {
		x, y := acts[s*batch*splitnet.Flat:(s+1)*batch*splitnet.Flat], labels[s*batch:(s+1)*batch]
		r := a.train(t, x, y, 0)
		if r.Steps != uint32(s+1) {
			t.Errorf("step %d: the reply counts %d steps", s+1, r.Steps)
		}
		losses = append(losses, float64(r.Loss))
		accs = append(accs, float64(r.Correct)/batch)
		replies = append(replies, r)
		correct += uint64(r.Correct)
		lossSum += float64(r.Loss) * batch
	}
	after := a.eval(t, testActs, testLabels)
	first, last := mean(losses[:5]), mean(losses[steps-5:])
	t.Logf("loss %.3f → %.3f (steps 1-5 %.3f, 26-30 %.3f); training accuracy %.0f%% → %.0f%%; 200 test digits: loss %.3f → %.3f, %d → %d right",
		losses[0], losses[steps-1], first, last, 100*mean(accs[:5]), 100*mean(accs[steps-5:]), before.Loss, after.Loss, before.Correct, after.Correct)
	if !(last < 0.7*first) {
		t.Errorf("mean loss of the last 5 steps %.3f is not below 0.7 × that of the first 5, %.3f", last, first)
	}
	if !(mean(accs[steps-5:]) > mean(accs[:5])+0.2) {
		t.Errorf("training accuracy %.2f in the last 5 steps, %.2f in the first 5: it did not rise by 0.2", mean(accs[steps-5:]), mean(accs[:5]))
	}
	if !(after.Loss < before.Loss && after.Correct > before.Correct) {
		t.Errorf("on test digits: loss %.3f → %.3f, right %d → %d", before.Loss, after.Loss, before.Correct, after.Correct)
	}
	st := a.stats(t)
	if st.Steps != steps || st.Examples != batch*steps || st.Correct != correct || math.Abs(st.LossSum-lossSum) > 1e-9*lossSum {
		t.Errorf("stats %+v, want %d steps, %d examples, %d right, loss sum %g", st, steps, batch*steps, correct, lossSum)
	}

	// init starts again from the same weights: in strict mode the same
	// steps give the same bits.
	a.call(t, "init", nil)
	for s := range 3 {
		x, y := acts[s*batch*splitnet.Flat:(s+1)*batch*splitnet.Flat], labels[s*batch:(s+1)*batch]
		r := a.train(t, x, y, 0)
		if r.Loss != replies[s].Loss || r.Correct != replies[s].Correct || !equalBits(r.Grad, replies[s].Grad) {
			t.Errorf("step %d after init: loss %v, right %d; the first time %v, %d (gradients equal: %t)",
				s+1, r.Loss, r.Correct, replies[s].Loss, replies[s].Correct, equalBits(r.Grad, replies[s].Grad))
		}
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// denseGradient is the loss and its gradient with respect to the
// activations x [B, Flat] of the dense layers ts (dense1.w, dense1.b,
// dense2.w, dense2.b), computed here in float64: the oracle of train's.
func denseGradient(ts []mnist.Tensor, x []float32, labels []int32) (float64, []float64) {
	const flat, hid, cls = splitnet.Flat, mnistnet.Hidden, mnistnet.Classes
	w1, b1, w2, b2 := ts[0].Data, ts[1].Data, ts[2].Data, ts[3].Data
	batch := len(labels)
	loss, dx := 0.0, make([]float64, len(x))
	for n := range batch {
		h := make([]float64, hid)
		for j := range hid {
			h[j] = float64(b1[j])
			for i := range flat {
				h[j] += float64(x[n*flat+i]) * float64(w1[i*hid+j])
			}
		}
		z := make([]float64, cls)
		top := math.Inf(-1)
		for k := range cls {
			z[k] = float64(b2[k])
			for j := range hid {
				z[k] += math.Max(h[j], 0) * float64(w2[j*cls+k])
			}
			top = math.Max(top, z[k])
		}
		sum := 0.0
		for k := range cls {
			sum += math.Exp(z[k] - top)
		}
		loss += (top + math.Log(sum) - z[labels[n]]) / float64(batch)
		dz := make([]float64, cls)
		for k := range cls {
			dz[k] = math.Exp(z[k]-top) / sum
			if k == int(labels[n]) {
				dz[k]--
			}
			dz[k] /= float64(batch)
		}
		for j := range hid {
			if h[j] <= 0 {
				continue
			}
			dh := 0.0
			for k := range cls {
				dh += dz[k] * float64(w2[j*cls+k])
			}
			for i := range flat {
				dx[n*flat+i] += dh * float64(w1[i*hid+j])
			}
		}
	}
	return loss, dx
}

// TestActorGradient checks the gradient train replies with, at the
// initial weights (init brings them back after the step): against the
// same computation in float64 on this side, and against central
// differences of the loss that eval replies with, for the two coordinates
// of largest gradient and one smaller.
func TestActorGradient(t *testing.T) {
	dir, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	set, err := mnist.LoadFirst(dir, "train", 8)
	if err != nil {
		t.Fatal(err)
	}
	net := mnistnet.Init(splitnet.DefaultSeed)
	conv, _ := splitnet.ConvWeights(net)
	a := startActor(t, node.ActorSpec{})

	// The whole gradient of a batch of 8.
	acts, labels := digits(set, conv, 0, 8)
	a.call(t, "init", nil)
	r := a.train(t, acts, labels, 0)
	loss, want := denseGradient(net[4:], acts, labels)
	scale, worst := 0.0, 0.0
	for i, w := range want {
		scale = math.Max(scale, math.Abs(w))
		worst = math.Max(worst, math.Abs(float64(r.Grad[i])-w))
	}
	t.Logf("batch of 8: loss %.6f (float64 %.6f); gradient within %.2g of the largest, %.3g, of float64's", r.Loss, loss, worst/scale, scale)
	// float32 sums of up to 1568 terms against float64: 1e-4 of the
	// largest value leaves a wide margin over the few 1e-7 they differ by.
	if worst > 1e-4*scale || math.Abs(float64(r.Loss)-loss) > 1e-5*loss {
		t.Errorf("train's loss %v and gradient differ from float64's %v by up to %.3g (largest value %.3g)", r.Loss, loss, worst, scale)
	}

	// Central differences through eval, for one image.
	acts, labels = acts[:splitnet.Flat], labels[:1]
	a.call(t, "init", nil)
	g := a.train(t, acts, labels, 0).Grad
	a.call(t, "init", nil)
	base := a.eval(t, acts, labels).Loss
	order := make([]int, 0, 3)
	for range 2 {
		best := -1
		for i, v := range g {
			if !slices.Contains(order, i) && (best < 0 || math.Abs(float64(v)) > math.Abs(float64(g[best]))) {
				best = i
			}
		}
		order = append(order, best)
	}
	// A smaller one: the first between a tenth and a half of the largest.
	for i, v := range g {
		if m := math.Abs(float64(v)) / math.Abs(float64(g[order[0]])); !slices.Contains(order, i) && m > 0.1 && m < 0.5 {
			order = append(order, i)
			break
		}
	}
	const h = 0.02
	for _, i := range order {
		x := slices.Clone(acts)
		x[i] = acts[i] + h
		up := a.eval(t, x, labels).Loss
		x[i] = acts[i] - h
		down := a.eval(t, x, labels).Loss
		// The perturbed values as float32 holds them, differenced in float64.
		fd := (float64(up) - float64(down)) / (float64(acts[i]+h) - float64(acts[i]-h))
		t.Logf("activation %d (%.4f): gradient %.6g, central difference %.6g (loss %.6f, ±h %.6f %.6f)", i, acts[i], g[i], fd, base, up, down)
		// The loss comes back in float32: each value is off by up to half
		// an ulp, about 1.2e-7 at a loss of 2, so the difference by up to
		// 2.4e-7/(2h) = 6e-6; 2 % of the gradient covers the curvature
		// and a relu of the hidden layer crossing its kink within ±h.
		if diff := math.Abs(fd - float64(g[i])); diff > 0.02*math.Abs(float64(g[i]))+1e-5 {
			t.Errorf("activation %d: gradient %.6g, central difference %.6g: they differ by %.3g", i, g[i], fd, diff)
		}
	}
}

// TestActorRefusesBadPayloads sends payloads that do not fit: each is
// refused with EINVAL and a reason, not a trap, and changes nothing.
func TestActorRefusesBadPayloads(t *testing.T) {
	acts := make([]float32, 2*splitnet.Flat)
	for i := range acts {
		acts[i] = float32(i%7) / 7
	}
	labels := []int32{1, 7}
	good := splitnet.TrainPayload(acts, labels, 0)
	with := func(b []byte, at int, v uint32) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[at:], v)
		return b
	}
	cases := []struct {
		name, method string
		payload      []byte
	}{
		{"empty train", "train", nil},
		{"batch of 0", "train", with(good, 0, 0)},
		{"batch of 257", "train", with(good, 0, 257)},
		{"batch larger than the bytes", "train", with(good, 0, 3)},
		{"one byte short", "train", good[:len(good)-1]},
		{"one byte over", "train", append(bytes.Clone(good), 0)},
		{"label 10", "train", with(good, len(good)-4, 10)},
		{"label -1", "train", with(good, len(good)-4, math.MaxUint32)},
		{"NaN activation", "train", with(good, 8+4*100, math.Float32bits(float32(math.NaN())))},
		{"infinite activation", "train", with(good, 8+4*200, math.Float32bits(float32(math.Inf(-1))))},
		{"negative learning rate", "train", with(good, 4, math.Float32bits(-0.1))},
		{"NaN learning rate", "train", with(good, 4, math.Float32bits(float32(math.NaN())))},
		{"eval with a learning rate", "eval", good},
		{"eval label 12", "eval", with(splitnet.EvalPayload(acts, labels), 4+4*len(acts), 12)},
		{"init of 3 bytes", "init", []byte{1, 2, 3}},
	}
	a := startActor(t, node.ActorSpec{})
	a.call(t, "init", nil)
	first := a.train(t, acts, labels, 0)
	for _, c := range cases {
		reply, code, err := a.raw(c.method, c.payload)
		if err != nil {
			t.Errorf("%s: the call failed: %v", c.name, err)
			continue
		}
		if code != uint32(abi.EINVAL) || len(reply) == 0 {
			t.Errorf("%s: code %d, reply %q: want %d (EINVAL) and a reason", c.name, code, reply, abi.EINVAL)
			continue
		}
		t.Logf("%s: %s", c.name, reply)
	}
	if st := a.stats(t); st.Steps != 1 || st.Examples != 2 {
		t.Errorf("after the refusals: %d steps, %d examples; want 1 and 2", st.Steps, st.Examples)
	}
	// The actor works on, from where it was.
	if r := a.train(t, acts, labels, 0); r.Steps != 2 || !(r.Loss < first.Loss) {
		t.Errorf("the step after the refusals: step %d, loss %v (the first %v)", r.Steps, r.Loss, first.Loss)
	}
}

// TestActorSurvivesEviction lets the node evict the actor between two
// steps and restore it from its sealed snapshot: the second step must give
// the bits it gives in an actor that stayed resident.
func TestActorSurvivesEviction(t *testing.T) {
	acts := make([]float32, 4*splitnet.Flat)
	for i := range acts {
		acts[i] = float32(i%11) / 11
	}
	labels := []int32{0, 3, 5, 9}
	resident := startActor(t, node.ActorSpec{})
	evicted := startActor(t, node.ActorSpec{IdleTimeout: 50 * time.Millisecond})
	for _, a := range []*actor{resident, evicted} {
		a.call(t, "init", splitnet.InitPayload(7))
		a.train(t, acts, labels, 0.1)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := evicted.n.ActorInfo(evicted.owner, evicted.id)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Resident {
			t.Logf("evicted; its sealed snapshot holds %d bytes", info.SnapshotBytes)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the actor was not evicted within 10 s")
		}
	}
	want := resident.train(t, acts, labels, 0.1)
	got := evicted.train(t, acts, labels, 0.1)
	if got.Steps != 2 || got.Loss != want.Loss || !equalBits(got.Grad, want.Grad) {
		t.Errorf("restored actor's second step: step %d, loss %v; the resident's: step %d, loss %v (gradients equal: %t)",
			got.Steps, got.Loss, want.Steps, want.Loss, equalBits(got.Grad, want.Grad))
	}
}
