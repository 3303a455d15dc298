//go:build wasip1

// Command guest is the WebAssembly side of `accelnode bench`. It times one
// workload point one of two ways and prints the times as a JSON line:
//
//   - plain: the computation written as ordinary code inside the guest,
//     which is what a WebAssembly program does without host functions (the
//     reference kernels' portable loops on one thread, compiled to wasm).
//     The node runs it twice: compiled with the loop checks that let a
//     deadline stop it, as every guest of `accelnode run` is, and without;
//   - host: the same computation through the accel host functions, on
//     inputs uploaded once and resident on the node's backend; each timed
//     run is the call and the free of its result.
//
// With -workload call it times one tiny host call (a one-element relu and
// the free of its result) in batches of -batch calls.
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/bench.wasm ./bench/guest
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/bench/workload"
	"github.com/accelnode/accelnode/hostfn/guest"
	"github.com/accelnode/accelnode/models"
)

// Result is what the guest prints.
type Result struct {
	TimesNS []int64 `json:"times_ns"`
	Error   string  `json:"error,omitempty"`
}

func main() {
	way := flag.String("way", "plain", "plain or host")
	name := flag.String("workload", "", "workload name, or call for one tiny host call")
	size := flag.Int("size", 0, "workload size")
	warmup := flag.Int("warmup", 1, "untimed runs first")
	minReps := flag.Int("min-reps", 3, "timed runs at least")
	maxReps := flag.Int("max-reps", 50, "timed runs at most")
	budget := flag.Duration("time", time.Second, "keep timing until this much time has passed")
	batch := flag.Int("batch", 1000, "calls per timed run, with -workload call")
	fingerprint := flag.Bool("fingerprint", false, "print the workloads' fingerprint and exit")
	flag.Parse()
	if *fingerprint {
		fmt.Println(workload.Fingerprint())
		return
	}

	b := workload.Budget{Warmup: *warmup, MinReps: *minReps, MaxReps: *maxReps, Time: *budget}
	times, err := run(*way, *name, *size, *batch, b)
	res := Result{}
	for _, t := range times {
		res.TimesNS = append(res.TimesNS, t.Nanoseconds())
	}
	if err != nil {
		res.Error = err.Error()
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if err != nil {
		os.Exit(1)
	}
}

func run(way, name string, size, batch int, b workload.Budget) ([]time.Duration, error) {
	ctx := context.Background()
	if name == "call" {
		return b.Repeat(ctx, tinyCalls(batch))
	}
	spec, err := workload.Find(name)
	if err != nil {
		return nil, err
	}
	p := spec.At(size)
	switch way {
	case "plain":
		return plain(ctx, p, b)
	case "host":
		return host(ctx, p, b)
	}
	return nil, fmt.Errorf("unknown way %q (want plain or host)", way)
}

// plain runs the point on the reference kernels compiled into this guest.
func plain(ctx context.Context, p workload.Point, b workload.Budget) ([]time.Duration, error) {
	s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var model *models.Model
	if p.Op == nil {
		var err error
		if model, err = models.NewRegistry().Add(workload.CNNName, workload.CNN()); err != nil {
			return nil, err
		}
	}
	bound, err := workload.Bind(s, p, model)
	if err != nil {
		return nil, err
	}
	defer bound.Close()
	return b.Repeat(ctx, func() error { return bound.Run(ctx) })
}

// host runs the point through the host functions.
func host(ctx context.Context, p workload.Point, b workload.Budget) ([]time.Duration, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var in []guest.Tensor
	defer func() { guest.FreeAll(in...) }()
	// One input at a time: the guest's memory then holds one large input,
	// not all of them.
	err := p.EachInput(func(t workload.Tensor) error {
		var x guest.Tensor
		var err error
		if t.I32 != nil {
			x, err = guest.FromInt32(t.I32, t.Shape...)
		} else {
			x, err = guest.FromFloat32(t.F32, t.Shape...)
		}
		if err != nil {
			return fmt.Errorf("upload %s: %w", t.Name, err)
		}
		in = append(in, x)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var call func() ([]guest.Tensor, error)
	one := func(t guest.Tensor, err error) ([]guest.Tensor, error) { return []guest.Tensor{t}, err }
	switch p.Op {
	case accel.MatMul:
		call = func() ([]guest.Tensor, error) { return one(guest.MatMul(in[0], in[1], 0)) }
	case accel.Conv2D:
		c := p.Conv2DParams()
		params := guest.Conv2DParams{
			StrideH: uint32(c.StrideH), StrideW: uint32(c.StrideW),
			PadTop: uint32(c.PadTop), PadLeft: uint32(c.PadLeft), PadBottom: uint32(c.PadBottom), PadRight: uint32(c.PadRight),
			DilationH: uint32(c.DilationH), DilationW: uint32(c.DilationW), Groups: uint32(c.Groups),
		}
		call = func() ([]guest.Tensor, error) { return one(guest.Conv2D(in[0], in[1], in[2], params)) }
	case accel.TSNEStep:
		st := guest.TSNEState{RowPtr: in[0], Cols: in[1], Vals: in[2], Y: in[3], Update: in[4], Gains: in[5]}
		tp := p.TSNEParams()
		params := guest.TSNEParams{LearningRate: tp.LearningRate, Momentum: tp.Momentum, Exaggeration: tp.Exaggeration, MinGain: tp.MinGain}
		call = func() ([]guest.Tensor, error) {
			_, err := guest.TSNEStep(st, params)
			return nil, err
		}
	case nil:
		m, err := guest.OpenModel(workload.CNNName)
		if err != nil {
			return nil, err
		}
		call = func() ([]guest.Tensor, error) { return m.Run(1, in[0]) }
	default:
		return nil, fmt.Errorf("%s: the benchmark guest has no host call for %s", p.Name, p.OpName())
	}
	return b.Repeat(ctx, func() error {
		outs, err := call()
		if err != nil {
			return err
		}
		return guest.FreeAll(outs...)
	})
}

// tinyCalls returns a run of batch one-element relus, each with the free
// of its result: two host calls apiece.
func tinyCalls(batch int) func() error {
	var x guest.Tensor
	return func() error {
		if batch < 1 {
			return errors.New("batch must be at least 1")
		}
		if x.Handle() == 0 {
			var err error
			if x, err = guest.FromFloat32([]float32{-1}, 1); err != nil {
				return err
			}
		}
		for range batch {
			r, err := guest.Relu(x)
			if err != nil {
				return err
			}
			if err := r.Free(); err != nil {
				return err
			}
		}
		return nil
	}
}
