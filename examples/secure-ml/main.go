//go:build !wasip1

// Command secure-ml is the seed application, ic-secure-ml, as a client of
// a node: it opens an encrypted session, runs t-SNE on real MNIST digits
// sent sealed, and runs split learning (the MNIST network's conv layers
// here, its dense layers in an actor on the node) with every payload
// sealed. It checks every receipt against the key the node publishes.
//
//	go run ./examples/secure-ml -node http://127.0.0.1:8080 -examples bin/examples -weights bin/mnist-weights.ant
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/examples/internal/splitnet"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/server/api"
)

func main() {
	node := flag.String("node", "http://127.0.0.1:8080", "the node's URL")
	apiKey := flag.String("api-key", os.Getenv("ACCELNODE_API_KEY"), "API key, where the node has keys")
	examples := flag.String("examples", "bin/examples", "directory holding tsne-mnist.wasm and split-dense.wasm")
	data := flag.String("data", ".deps/mnist", "directory holding the MNIST files")
	weights := flag.String("weights", "", "a checkpoint of examples/mnist-train whose conv layers the client computes; empty draws them at random")
	n := flag.Int("n", 1000, "test digits embedded with t-SNE")
	iters := flag.Int("iters", 500, "t-SNE iterations")
	rounds := flag.Int("rounds", 20, "split-learning rounds of -batch digits each")
	batch := flag.Int("batch", 32, "digits per split-learning round")
	flag.Parse()
	ctx := context.Background()
	if err := run(ctx, *node, *apiKey, *examples, *data, *weights, *n, *iters, *rounds, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "secure-ml:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, key, examples, data, weights string, n, iters, rounds, batch int) error {
	c, err := client.New(url, client.WithAPIKey(key), client.WithUserAgent("secure-ml"))
	if err != nil {
		return err
	}
	id, err := c.Node(ctx)
	if err != nil {
		return err
	}
	nodeKey := base64.StdEncoding.EncodeToString(id.PublicKey)
	fmt.Printf("node %s, contract %s\n", id.Fingerprint, id.Contract)
	test, err := mnist.LoadFirst(data, "t10k", max(n, rounds*batch+256))
	if err != nil {
		return err
	}
	s, err := c.OpenSession(ctx, 0)
	if err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	fmt.Printf("session %s open until %s; every request and answer below is sealed\n", s.ID, s.ExpiresAt.Format(time.TimeOnly))
	check := func(what string, r crypto.SignedReceipt) error {
		if r.Receipt.Node != nodeKey {
			return fmt.Errorf("%s: the receipt is signed by %s, not by the node", what, r.Receipt.Node)
		}
		fmt.Printf("  receipt checked: %s, signed by %s, output %s…\n", r.Receipt.Job, id.Fingerprint, r.Receipt.Output[:16])
		return nil
	}

	// t-SNE on real digits, sent sealed.
	module, err := putModule(ctx, c, filepath.Join(examples, "tsne-mnist.wasm"))
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := s.Invoke(ctx, api.JobRequest{Module: module, Mode: "strict", Stdin: points(test, n),
		Args: []string{"-data", "-", "-out", "-", "-iters", strconv.Itoa(iters)}})
	if err != nil {
		return err
	}
	if res.Result.Outcome != "exited" || res.Result.ExitCode != 0 {
		return fmt.Errorf("t-SNE job %s: %s %d: %s", res.Job, res.Result.Outcome, res.Result.ExitCode, res.Result.Stderr)
	}
	lines := strings.Count(string(res.Result.Stdout), "\n")
	fmt.Printf("t-SNE of %d digits: %d embedded points back in %.1fs\n", n, lines, time.Since(start).Seconds())
	for _, l := range strings.Split(strings.TrimSpace(string(res.Result.Stderr)), "\n") {
		if strings.HasPrefix(l, "tsne:") || strings.HasPrefix(l, "time:") {
			fmt.Println("  " + l)
		}
	}
	if err := check("t-SNE", res.Receipt); err != nil {
		return err
	}

	// Split learning: conv layers here, dense layers in an actor.
	conv, err := convWeights(weights)
	if err != nil {
		return err
	}
	module, err = putModule(ctx, c, filepath.Join(examples, "split-dense.wasm"))
	if err != nil {
		return err
	}
	actor, err := c.StartActor(ctx, api.ActorRequest{Module: module, Mode: "strict"})
	if err != nil {
		return err
	}
	defer c.StopActor(context.WithoutCancel(ctx), actor.ID)
	if _, err := s.CallActor(ctx, actor.ID, "init", splitnet.InitPayload(1)); err != nil {
		return err
	}
	fmt.Printf("split learning with actor %s on %s: the conv layers run here, the dense layers on the node\n", actor.ID, actor.Backend)
	var last client.ActorCall
	for r := range rounds {
		imgs, labels := slice(test, r*batch, batch)
		call, err := s.CallActor(ctx, actor.ID, "train", splitnet.TrainPayload(splitnet.Features(conv, imgs, batch), labels, 0))
		if err != nil {
			return err
		}
		if call.Code != 0 {
			return fmt.Errorf("train: code %d: %s", call.Code, call.Reply)
		}
		reply, err := splitnet.DecodeTrainReply(call.Reply)
		if err != nil {
			return err
		}
		if r == 0 || (r+1)%5 == 0 {
			fmt.Printf("  round %2d: loss %.3f, %2d/%d right, gradient of %d floats back\n", r+1, reply.Loss, reply.Correct, batch, len(reply.Grad))
		}
		last = call
	}
	imgs, labels := slice(test, rounds*batch, 256)
	call, err := s.CallActor(ctx, actor.ID, "eval", splitnet.EvalPayload(splitnet.Features(conv, imgs, 256), labels))
	if err != nil {
		return err
	}
	ev, err := splitnet.DecodeEvalReply(call.Reply)
	if err != nil {
		return err
	}
	fmt.Printf("  held-out: %d of 256 right (loss %.3f)\n", ev.Correct, ev.Loss)
	if err := check("the last training round", last.Receipt); err != nil {
		return err
	}
	return check("the held-out evaluation", call.Receipt)
}

// putModule stores a guest on the node and returns its sha256.
func putModule(ctx context.Context, c *client.Client, path string) (string, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w (make build makes it)", err)
	}
	b, err := c.PutModule(ctx, bytes.NewReader(wasm))
	return b.SHA256, err
}

// points encodes the first n digits in tsne-mnist's binary form: "apts",
// N, D, encoding 1 (u8 pixels), the labels, the pixels.
func points(s *mnist.Set, n int) []byte {
	b := []byte("apts")
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Rows*s.Cols))
	b = binary.LittleEndian.AppendUint32(b, 1)
	for i := range n {
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Labels[i]))
	}
	return append(b, s.Images[:n*s.Rows*s.Cols]...)
}

// slice returns k digits from i on, as pixels in [0, 1] and labels.
func slice(s *mnist.Set, i, k int) ([]float32, []int32) {
	imgs := make([]float32, 0, k*s.Rows*s.Cols)
	labels := make([]int32, k)
	for j := range k {
		for _, p := range s.Image(i + j) {
			imgs = append(imgs, float32(p)/255)
		}
		labels[j] = int32(s.Labels[i+j])
	}
	return imgs, labels
}

// convWeights reads the conv layers of a checkpoint, or draws them.
func convWeights(path string) ([]float32, error) {
	if path == "" {
		return splitnet.ConvWeights(mnistnet.Init(rand.Uint64()))
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (make demo trains one)", err)
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := mnist.ReadTensors(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return splitnet.ConvWeights(ts)
}
