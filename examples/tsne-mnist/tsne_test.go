//go:build !wasip1

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/node"
)

// TestEmbedding embeds 2,000 real digits (about 5 s a run on two cores) on
// every CPU configuration of
// strict mode: ref with one thread and with two, and its portable Go loops.
// The embedding's hash must be the same on all three, the embedding must
// keep the digits' neighbourhoods and classes (trustworthiness and 10-NN
// accuracy), and the CSV must hold one line per digit with its label.
func TestEmbedding(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	train, err := mnist.Load(data, "train")
	if err != nil {
		t.Fatal(err)
	}
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/tsne-mnist")
	const n = 2000
	args := []string{"-n", strconv.Itoa(n), "-iters", "1000", "-out", "/out/tsne.csv"}
	configs := []struct {
		name    string
		backend string
		threads int
	}{
		{"ref, 1 thread", "ref", 1},
		{"ref, 2 threads", "ref", 2},
		{"ref-portable, 2 threads", "ref-portable", 2},
	}
	if testing.Short() {
		configs = configs[1:2]
	}
	summary := regexp.MustCompile(`(?m)^tsne: .* iters=(\d+) kl=([0-9.]+) trust10=([0-9.]+) knn10=([0-9.]+) `)
	hashLine := regexp.MustCompile(`(?m)^embedding sha256 ([0-9a-f]{64})$`)
	want := ""
	for i, c := range configs {
		out := t.TempDir()
		nd, err := node.Open(context.Background(), node.Config{Backend: c.backend, Mode: accel.Strict, Backends: accel.Options{Threads: c.threads}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := nd.Compile(context.Background(), wasm)
		if err != nil {
			nd.Close()
			t.Fatal(err)
		}
		res, err := nd.Invoke(context.Background(), m, node.Invocation{Args: args, Mounts: []engine.Mount{
			{HostPath: data, GuestPath: "/data", ReadOnly: true}, {HostPath: out, GuestPath: "/out"}}})
		nd.Close()
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v, exit code %d\n%s%s", c.name, err, res.ExitCode, res.Stdout, res.Stderr)
		}
		t.Logf("%s:\n%s", c.name, res.Stdout)
		h := hashLine.FindStringSubmatch(string(res.Stdout))
		if h == nil {
			t.Fatalf("%s printed no embedding hash", c.name)
		}
		if i > 0 {
			if h[1] != want {
				t.Errorf("%s embedded the digits otherwise than %s: %s, want %s", c.name, configs[0].name, h[1], want)
			}
			continue
		}
		want = h[1]
		s := summary.FindStringSubmatch(string(res.Stdout))
		if s == nil {
			t.Fatalf("%s printed no summary", c.name)
		}
		// 2,000 digits after 1,000 iterations: trustworthiness 0.982 and
		// 10-NN accuracy 0.895 (after 300, 0.967 and 0.857).
		if trust, _ := strconv.ParseFloat(s[3], 64); trust < 0.95 {
			t.Errorf("trustworthiness %g, want at least 0.95", trust)
		}
		if acc, _ := strconv.ParseFloat(s[4], 64); acc < 0.85 {
			t.Errorf("10-NN accuracy %g, want at least 0.85", acc)
		}
		if y := readCSV(t, filepath.Join(out, "tsne.csv"), train.Labels[:n]); embeddingHash(y) != want {
			t.Errorf("the CSV's coordinates hash to %s, not to the embedding's %s: they do not read back exactly", embeddingHash(y), want)
		}
	}
}

// readCSV checks the header, one line per digit and the digits' labels in
// order, and returns the coordinates.
func readCSV(t *testing.T, path string, labels []uint8) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() || sc.Text() != "x,y,label" {
		t.Fatalf("%s: header %q, want x,y,label", path, sc.Text())
	}
	var y []float32
	i := 0
	for ; sc.Scan(); i++ {
		fields := strings.Split(sc.Text(), ",")
		if len(fields) != 3 || i >= len(labels) {
			t.Fatalf("%s: line %d is %q", path, i+2, sc.Text())
		}
		for _, v := range fields[:2] {
			f, err := strconv.ParseFloat(v, 32)
			if err != nil {
				t.Fatalf("%s: line %d: %v", path, i+2, err)
			}
			y = append(y, float32(f))
		}
		if l, err := strconv.Atoi(fields[2]); err != nil || l != int(labels[i]) {
			t.Fatalf("%s: line %d has label %q, want %d", path, i+2, fields[2], labels[i])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(labels) {
		t.Errorf("%s holds %d points, want %d", path, i, len(labels))
	}
	return y
}

// embeddingHash is the guest's hash: the sha256 of the float32s,
// little-endian.
func embeddingHash(y []float32) string {
	b := make([]byte, 0, 4*len(y))
	for _, v := range y {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
