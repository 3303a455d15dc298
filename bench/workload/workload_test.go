package workload

import (
	"context"
	"errors"
	"slices"
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
				sess := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
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
		{"max reps bound", Budget{Warmup: 0, MinReps: 1, MaxReps: 4, Time: time.Hour}, -1, 4, 4, nil},
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
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Budget{MinReps: 1, MaxReps: 1}).Repeat(ctx, func() error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Repeat on a cancelled context = %v", err)
	}
}
