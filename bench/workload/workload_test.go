package workload

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models"
)

func TestFLOPsAndBytes(t *testing.T) {
	for _, c := range []struct {
		name         string
		size         int
		flops, bytes float64
		shape        string
	}{
		{"matmul-square", 4, 2 * 4 * 4 * 4, 4 * 3 * 16, "4x4x4"},
		{"matmul-dense", 2, 2 * 2 * 1024 * 1024, 4 * (2*1024 + 1024*1024 + 2*1024), "2x1024x1024"},
		{"conv2d-mnist", 1, 2 * 32 * 26 * 26 * 9, 4 * (28*28 + 32*9 + 32*26*26), "1x1x28x28*32x1x3x3"},
		{"conv2d-resnet50", 2, 2 * 2 * 64 * 56 * 56 * 64 * 9, 4 * (2*64*56*56*2 + 64*64*9), "2x64x56x56*64x64x3x3"},
		{"tsne", 100, 13*100*99 + 12*100*90 + 20*100, 4*101 + 8*100*90 + 48*100, "N=100,nnz=9000"},
		{"model-cnn", 3, 3 * 5262080, 4*3*(784+10) + 4*225034, "3x1x28x28"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Find(c.name)
			if err != nil {
				t.Fatal(err)
			}
			p := s.At(c.size)
			if got := p.FLOPs(); got != c.flops {
				t.Errorf("FLOPs = %g, want %g", got, c.flops)
			}
			if got := p.Bytes(); got != c.bytes {
				t.Errorf("Bytes = %g, want %g", got, c.bytes)
			}
			if got := p.Shape(); got != c.shape {
				t.Errorf("Shape = %q, want %q", got, c.shape)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		size int
		ok   bool
	}{
		{"matmul-square", 1, true},
		{"matmul-square", 0, false},
		{"tsne", 90, false},
		{"tsne", 91, true},
		{"matmul-square", 1 << 16, false}, // 2^32 elements a matrix
		{"matmul-square", 20000, false},   // 4.8 GB of tensors, over a session's 4 GiB
		{"matmul-square", 8192, true},
		{"matmul-square", 16384, true},
		{"matmul-square", 16385, false}, // above the largest size
		{"matmul-dense", 262144, true},
		{"matmul-dense", 262145, false},
		{"conv2d-resnet50", 1025, false},
		{"conv2d-mnist", 16385, false},
		{"tsne", 70000, true},
		{"tsne", 70001, false},
		{"tsne", 999999, false}, // hours a step in plain WebAssembly
		{"model-cnn", 8192, true},
		{"model-cnn", 8193, false},
	} {
		s, _ := Find(c.name)
		if err := s.At(c.size).Validate(); (err == nil) != c.ok {
			t.Errorf("%s at %d: Validate() = %v, want ok %v", c.name, c.size, err, c.ok)
		}
	}
	if _, err := Find("nope"); err == nil {
		t.Error("Find(nope) found something")
	}
}

// TestSpecs checks every workload against the op table and its own bounds:
// its op is the table's (or a whole model), its sweeps and its largest
// size are points the op's shape rule accepts, and nothing above it is.
func TestSpecs(t *testing.T) {
	var ops []string
	for _, s := range Specs() {
		t.Run(s.Name, func(t *testing.T) {
			if s.Op == nil {
				if s.OpName() != ModelOp {
					t.Errorf("OpName = %q without an op, want %q", s.OpName(), ModelOp)
				}
			} else if op, ok := accel.LookupOp(s.OpName()); !ok || op != s.Op {
				t.Errorf("op %s is not the op table's", s.OpName())
			}
			sizes := append(append(slices.Clone(s.Sizes), s.Quick...), s.MaxSize)
			for _, n := range sizes {
				if err := s.At(n).Validate(); err != nil {
					t.Errorf("size %d of its own: %v", n, err)
				}
			}
			if slices.Max(sizes) != s.MaxSize {
				t.Errorf("sizes up to %d, above MaxSize %d", slices.Max(sizes), s.MaxSize)
			}
			if err := s.At(s.MaxSize + 1).Validate(); err == nil || !strings.Contains(err.Error(), "above the largest") {
				t.Errorf("size %d above MaxSize: Validate() = %v", s.MaxSize+1, err)
			}
		})
		if !slices.Contains(ops, s.OpName()) {
			ops = append(ops, s.OpName())
		}
	}
	if got := Ops(); !slices.Equal(got, ops) || !slices.Equal(got, []string{"matmul", "conv2d", "tsne_step", "model"}) {
		t.Errorf("Ops() = %v", got)
	}
}

func TestInputElements(t *testing.T) {
	for _, c := range []struct {
		name string
		size int
		want int
	}{
		{"matmul-square", 4, 2 * 16},
		{"matmul-dense", 2, 2*1024 + 1024*1024},
		{"conv2d-mnist", 1, 28*28 + 32*9 + 32},
		{"tsne", 100, 101 + 2*9000 + 3*200},
		{"model-cnn", 3, 3 * 28 * 28},
	} {
		s, _ := Find(c.name)
		if got := s.At(c.size).InputElements(); got != c.want {
			t.Errorf("%s at %d: %d input elements, want %d", c.name, c.size, got, c.want)
		}
		total := 0
		for _, x := range s.At(c.size).Inputs() {
			total += product(x.Shape)
		}
		if total != c.want {
			t.Errorf("%s at %d: the inputs drawn hold %d elements, want %d", c.name, c.size, total, c.want)
		}
	}
	if got := (Point{}).InputElements(); got != 0 {
		t.Errorf("the zero Point has %d input elements", got)
	}
}

// TestEachInput checks that drawing the inputs one at a time gives
// Inputs' tensors, and stops at the caller's error.
func TestEachInput(t *testing.T) {
	for _, s := range Specs() {
		p := s.At(s.Quick[0])
		var each []Tensor
		if err := p.EachInput(func(x Tensor) error { each = append(each, x); return nil }); err != nil {
			t.Fatal(err)
		}
		if !equalInputs(each, p.Inputs()) || len(each) == 0 {
			t.Errorf("%s: EachInput drew other inputs than Inputs", p.Name)
		}
		stop := errors.New("stop")
		calls := 0
		if err := p.EachInput(func(Tensor) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Errorf("%s: EachInput went on after an error: %v after %d calls", p.Name, err, calls)
		}
	}
}

// TestBindRun runs every workload's quick sizes on ref: the inputs fit the
// op, the model compiles, runs free what they produce, and the inputs are a
// function of the point alone (which is what lets the guest draw the same
// ones; the fingerprint check compares the two sides).
func TestBindRun(t *testing.T) {
	reg := models.NewRegistry()
	cnn, err := reg.Add(CNNName, CNN())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range Specs() {
		for _, n := range s.Quick {
			p := s.At(n)
			t.Run(p.Name+"/"+p.Shape(), func(t *testing.T) {
				if !equalInputs(p.Inputs(), p.Inputs()) {
					t.Fatal("inputs differ between two draws")
				}
				sess, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer sess.Close()
				b, err := Bind(sess, p, cnn)
				if err != nil {
					t.Fatal(err)
				}
				live := sess.LiveTensors()
				for range 2 {
					if err := b.Run(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if got := sess.LiveTensors(); got != live {
					t.Errorf("%d live tensors after two runs, want %d: Run leaks its outputs", got, live)
				}
				b.Close()
				if got := sess.LiveTensors(); got != 0 {
					t.Errorf("%d live tensors after Close", got)
				}
			})
		}
	}
}

func equalInputs(a, b []Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !slices.Equal(a[i].Shape, b[i].Shape) || !slices.Equal(a[i].F32, b[i].F32) || !slices.Equal(a[i].I32, b[i].I32) {
			return false
		}
	}
	return true
}

func TestTSNEInputsAreAValidP(t *testing.T) {
	s, err := Find("tsne")
	if err != nil {
		t.Fatal(err)
	}
	in := s.At(500).Inputs()
	rowptr, cols, vals := in[0].I32, in[1].I32, in[2].F32
	var sum float64
	for i := range 500 {
		row := cols[rowptr[i]:rowptr[i+1]]
		if len(row) != tsneNeighbours {
			t.Fatalf("row %d has %d neighbours", i, len(row))
		}
		for j, c := range row {
			if int(c) == i || c < 0 || c >= 500 || j > 0 && row[j-1] >= c {
				t.Fatalf("row %d: column %d at %d is self, out of range or unsorted", i, c, j)
			}
		}
	}
	for _, v := range vals {
		sum += float64(v)
	}
	if sum < 0.99 || sum > 1.01 {
		t.Errorf("P sums to %g, want 1", sum)
	}
}

func TestRepeat(t *testing.T) {
	fail := errors.New("boom")
	for _, c := range []struct {
		name      string
		b         Budget
		failAt    int
		wantCalls int
		wantTimed int
		wantErr   error
	}{
		{"min reps bound", Budget{Warmup: 2, MinReps: 3, MaxReps: 10, Time: 0}, -1, 5, 3, nil},
		{"max reps bound", Budget{Warmup: 0, MinReps: 1, MaxReps: 4, Time: MaxTime}, -1, 4, 4, nil},
		{"error in warm-up", Budget{Warmup: 2, MinReps: 1, MaxReps: 4}, 1, 2, 0, fail},
		{"error while timing", Budget{Warmup: 1, MinReps: 5, MaxReps: 5}, 3, 4, 2, fail},
		{"invalid", Budget{MinReps: 0, MaxReps: 1}, -1, 0, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			times, err := c.b.Repeat(context.Background(), func() error {
				calls++
				if calls-1 == c.failAt {
					return fail
				}
				return nil
			})
			if c.name == "invalid" {
				if err == nil {
					t.Fatal("invalid budget accepted")
				}
				return
			}
			if !errors.Is(err, c.wantErr) || calls != c.wantCalls || len(times) != c.wantTimed {
				t.Errorf("Repeat = %d times, %v after %d calls; want %d, %v after %d", len(times), err, calls, c.wantTimed, c.wantErr, c.wantCalls)
			}
		})
	}
	for _, b := range []Budget{
		{Warmup: -1, MinReps: 1, MaxReps: 1},
		{Warmup: MaxWarmup + 1, MinReps: 1, MaxReps: 1},
		{MinReps: MaxMinReps + 1, MaxReps: MaxMinReps + 1},
		{MinReps: 2, MaxReps: 1},
		{MinReps: 1, MaxReps: MaxMaxReps + 1},
		{MinReps: 1, MaxReps: 1, Time: -time.Second},
		{MinReps: 1, MaxReps: 1, Time: MaxTime + time.Second},
	} {
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "invalid budget") {
			t.Errorf("Validate(%+v) = %v, want an invalid budget", b, err)
		}
	}
	if err := (Budget{Warmup: MaxWarmup, MinReps: MaxMinReps, MaxReps: MaxMaxReps, Time: MaxTime}).Validate(); err != nil {
		t.Errorf("the bounds themselves: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Budget{MinReps: 1, MaxReps: 1}).Repeat(ctx, func() error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Repeat on a cancelled context = %v", err)
	}
}
