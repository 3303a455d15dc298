//go:build !wasip1

package main

import (
	"bufio"
	"bytes"
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

// TestStdin embeds points read from stdin (-data -) in the three forms the
// guest reads: CSV, and the binary form with f32 and with u8 values. The
// same values must give the same embedding, written to stdout (-out -)
// with the labels in order, and the KL divergence must come on stderr
// every 50 iterations.
func TestStdin(t *testing.T) {
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/tsne-mnist")
	nd, err := node.Open(context.Background(), node.Config{Backend: "ref", Mode: accel.Strict})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	m, err := nd.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	// Three clusters of 40 points in 6 dimensions, u8 values as pixels are.
	const n, d = 120, 6
	labels := make([]int32, n)
	pixels := make([]uint8, n*d)
	for i := range n {
		labels[i] = int32(i % 3)
		for j := range d {
			pixels[i*d+j] = uint8(40*int(labels[i]) + (i*7+j*13)%23 + 10*((j+int(labels[i]))%2))
		}
	}
	var csv strings.Builder
	csv.WriteString("label,a,b,c,d,e,f\n")
	f32 := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte("apts"), n), d), 2)
	u8 := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte("apts"), n), d), 1)
	for _, l := range labels {
		f32 = binary.LittleEndian.AppendUint32(f32, uint32(l))
		u8 = binary.LittleEndian.AppendUint32(u8, uint32(l))
	}
	u8 = append(u8, pixels...)
	for i := range n {
		csv.WriteString(strconv.Itoa(int(labels[i])))
		for j := range d {
			v := float32(pixels[i*d+j]) / 255
			csv.WriteString("," + strconv.FormatFloat(float64(v), 'g', -1, 32))
			f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(v))
		}
		csv.WriteString("\n")
	}
	args := []string{"-data", "-", "-out", "-", "-pca", "4", "-perplexity", "10", "-iters", "300"}
	kl := regexp.MustCompile(`(?m)^kl: iteration=(\d+) kl=[0-9.]+ grad_norm=\S+ seconds=[0-9.]+$`)
	var want string
	for _, in := range []struct {
		name string
		data []byte
	}{{"csv", []byte(csv.String())}, {"f32", f32}, {"u8", u8}} {
		res, err := nd.Invoke(context.Background(), m, node.Invocation{Args: args, Stdin: bytes.NewReader(in.data)})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v, exit code %d\n%s", in.name, err, res.ExitCode, res.Stderr)
		}
		lines := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
		if len(lines) != n+1 || lines[0] != "x,y,label" {
			t.Fatalf("%s: stdout has %d lines, header %q; want %d and x,y,label", in.name, len(lines), lines[0], n+1)
		}
		for i, line := range lines[1:] {
			if !strings.HasSuffix(line, ","+strconv.Itoa(int(labels[i]))) {
				t.Fatalf("%s: point %d is %q, want label %d", in.name, i, line, labels[i])
			}
		}
		its := kl.FindAllStringSubmatch(string(res.Stderr), -1)
		if len(its) != 6 || its[0][1] != "50" || its[5][1] != "300" {
			t.Errorf("%s: stderr has %d KL lines, want 6, at 50 to 300:\n%s", in.name, len(its), res.Stderr)
		}
		if !strings.Contains(string(res.Stderr), "\ntsne: n=120 pca=4 ") {
			t.Errorf("%s: no summary on stderr:\n%s", in.name, res.Stderr)
		}
		if want == "" {
			want = string(res.Stdout)
		} else if string(res.Stdout) != want {
			t.Errorf("%s: the embedding differs from the CSV's", in.name)
		}
	}

	for _, c := range []struct {
		name, in, err string
	}{
		{"ragged", "1,2,3\n2,4\n", "line 2: 1 coordinates, where the first point has 2"},
		{"label", "1,2,3\nx,4,5\n", `line 2: label "x" is not an integer`},
		{"short", "apts\x02\x00\x00\x00", "points: the header is cut short"},
		{"size", "apts\x02\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", "points: 16 bytes: 2 points of 1 dimensions take 32"},
		{"pca", "0,1,2\n1,2,3\n0,3,3\n1,4,1\n", "-pca 4: want 0 to 2, the points' dimensions"},
	} {
		res, _ := nd.Invoke(context.Background(), m, node.Invocation{Args: args, Stdin: strings.NewReader(c.in)})
		if res.ExitCode != 1 || !strings.Contains(string(res.Stderr), c.err) {
			t.Errorf("%s: exit code %d, stderr %q; want 1 and %q", c.name, res.ExitCode, res.Stderr, c.err)
		}
	}
}
