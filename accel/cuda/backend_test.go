package cuda

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
)

// These tests need no GPU: they check how the backend is wired, on
// backends without a device or with a device that has no owner goroutine.

func TestVariantFor(t *testing.T) {
	tests := []struct {
		mode accel.Mode
		want variant
		ok   bool
	}{
		{accel.Strict, strictKernels, true},
		{accel.Fast, fastKernels, true},
		{accel.Checked, fastKernels, true},
		{accel.Mode(99), 0, false},
	}
	for _, tc := range tests {
		if got, ok := variantFor(tc.mode); got != tc.want || ok != tc.ok {
			t.Errorf("variantFor(%v) = %v, %v; want %v, %v", tc.mode, got, ok, tc.want, tc.ok)
		}
	}
}

// TestKernelTables checks that every operation has a kernel in every mode
// the backend serves, and that the tables hold nothing else.
func TestKernelTables(t *testing.T) {
	b := newBackend(false)
	for _, mode := range modes {
		for _, op := range accel.Ops() {
			switch k := b.Kernel(op, mode); {
			case slices.Contains(withoutKernels, op) && k != nil:
				t.Errorf("a %s kernel in %s mode, listed as without one", op, mode)
			case !slices.Contains(withoutKernels, op) && k == nil:
				t.Errorf("no %s kernel in %s mode", op, mode)
			}
		}
	}
	for v, table := range b.tables {
		if want := len(accel.Ops()) - len(withoutKernels); len(table) != want {
			t.Errorf("the %s table has %d kernels, want %d", variant(v), len(table), want)
		}
	}
	if k := b.Kernel(accel.MatMul, accel.Mode(99)); k != nil {
		t.Error("a kernel for a mode the backend does not serve")
	}
	if !slices.Equal(modes, accel.AllModes) {
		t.Errorf("the backend serves %v, want every mode, %v", modes, accel.AllModes)
	}
}

// fakeDevice is a device with no owner goroutine: work sent to it fails
// at once as closed, so nothing can wait for a GPU.
func fakeDevice(dnnErr error) *device {
	quit := make(chan struct{})
	close(quit)
	return &device{
		name: "Test GPU", major: 9, sms: 132, totalMem: 141 << 30,
		libs: &libraries{dnnErr: dnnErr},
		jobs: make(chan func()), quit: quit,
	}
}

func TestStatus(t *testing.T) {
	healthy := func() *Backend {
		b := newBackend(true)
		b.dev, b.libInfo = fakeDevice(errors.New("cuDNN not found")), "CUDA driver API 12.4"
		return b
	}
	faulted := healthy()
	fault := errors.New("matmul: CUDA_ERROR_ILLEGAL_ADDRESS")
	faulted.dev.fault.Store(&fault)
	closed := healthy()
	closed.closed.Store(true)
	plain := newBackend(false) // TF32 off, cuDNN loaded
	plain.dev = fakeDevice(nil)
	plain.dev.libs.dnn = &cudnnAPI{}
	none := newBackend(false)
	none.reason = "no GPU here"

	all := []accel.Mode{accel.Strict, accel.Fast, accel.Checked}
	tests := []struct {
		name      string
		b         *Backend
		available bool
		modes     []accel.Mode
		reason    string   // contained in Status.Reason
		device    []string // contained in Status.Device
		absent    []string // not contained in Status.Device
	}{
		{"healthy", healthy(), true, all, "",
			[]string{"Test GPU (sm_90, 132 SMs, 141 GiB)", "CUDA driver API 12.4", "fast mode: TF32", "fast conv2d on own kernels: cuDNN not found"}, nil},
		{"TF32 off, cuDNN loaded", plain, true, all, "", []string{"Test GPU"}, []string{"TF32", "own kernels"}},
		{"faulted", faulted, false, nil, "unhealthy since an earlier failure: matmul: CUDA_ERROR_ILLEGAL_ADDRESS", []string{"Test GPU"}, nil},
		{"closed", closed, false, nil, "closed", []string{"Test GPU"}, nil},
		{"no device", none, false, nil, "no GPU here", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.b.Status()
			if st.Name != "cuda" || st.Available != tc.available || !slices.Equal(st.Modes, tc.modes) || st.FastIsStrict {
				t.Fatalf("status %+v: want available %v, modes %v, fast kernels of its own", st, tc.available, tc.modes)
			}
			if !strings.Contains(st.Reason, tc.reason) || (tc.reason == "") != (st.Reason == "") {
				t.Errorf("reason %q, want %q", st.Reason, tc.reason)
			}
			for _, want := range tc.device {
				if !strings.Contains(st.Device, want) {
					t.Errorf("device %q lacks %q", st.Device, want)
				}
			}
			for _, unwanted := range tc.absent {
				if strings.Contains(st.Device, unwanted) {
					t.Errorf("device %q mentions %q", st.Device, unwanted)
				}
			}
			for _, mode := range accel.AllModes {
				if st.Serves(mode) != tc.available {
					t.Errorf("Serves(%s) = %v, want %v", mode, st.Serves(mode), tc.available)
				}
			}
		})
	}
}

// opInputs are the inputs and parameters of one small, valid call of each
// operation, for tests that need tensors of the right shapes.
var opInputs = map[*accel.Op]struct {
	params any
	f32    map[int][]int // input index -> shape
	i32    map[int][]int32
}{
	accel.MatMul:    {accel.MatMulParams{TransB: true}, map[int][]int{0: {2, 3}, 1: {4, 3}}, nil},
	accel.Conv2D:    {accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: 1, PadBottom: 1, DilationH: 1, DilationW: 1, Groups: 1}, map[int][]int{0: {1, 1, 3, 3}, 1: {2, 1, 2, 2}, 2: {2}}, nil},
	accel.AddBias:   {accel.AddBiasParams{Axis: 1}, map[int][]int{0: {2, 3}, 1: {3}}, nil},
	accel.Relu:      {accel.NoParams{}, map[int][]int{0: {5}}, nil},
	accel.MaxPool2D: {accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1}, map[int][]int{0: {1, 2, 3, 3}}, nil},
	accel.Softmax:   {accel.NoParams{}, map[int][]int{0: {2, 4}}, nil},
	accel.TSNEStep: {accel.TSNEParams{LearningRate: 1, Momentum: 0.5, Exaggeration: 1, MinGain: 0.01, ComputeKL: true},
		map[int][]int{2: {2}, 3: {2, 2}, 4: {2, 2}, 5: {2, 2}}, map[int][]int32{0: {0, 1, 2}, 1: {1, 0}}},
	accel.Add:           {accel.NoParams{}, map[int][]int{0: {2, 3}, 1: {2, 3}}, nil},
	accel.Clip:          {accel.ClipParams{Min: 0, Max: 6}, map[int][]int{0: {2, 3}}, nil},
	accel.GlobalAvgPool: {accel.NoParams{}, map[int][]int{0: {1, 2, 3, 3}}, nil},
	accel.Unary:         {accel.UnaryParams{Func: accel.UnaryHardSigmoid, Alpha: 0.2, Beta: 0.5}, map[int][]int{0: {2, 3}}, nil},
	accel.Binary:        {accel.BinaryParams{Func: accel.BinaryDiv}, map[int][]int{0: {2, 3}, 1: {3}}, nil},
	accel.Transpose:     {accel.PermParams(1, 0), map[int][]int{0: {2, 3}}, nil},
	accel.LayerNorm:     {accel.LayerNormParams{Axis: 1, Epsilon: 1e-5}, map[int][]int{0: {2, 3}, 1: {3}, 2: {3}}, nil},
	accel.BatchMatMul:   {accel.NoParams{}, map[int][]int{0: {2, 2, 3}, 1: {3, 4}}, nil},
	accel.Concat:        {accel.ConcatParams{Axis: 1}, map[int][]int{0: {2, 3}, 1: {2, 1}}, nil},
	accel.Slice:         {accel.SliceAxes([]int{1, 0}, []int{-1, 2}, []int{2, 2}), map[int][]int{0: {2, 3}}, nil},
	accel.Gather:        {accel.GatherParams{Axis: 1}, map[int][]int{0: {2, 3}}, map[int][]int32{1: {2, -3, 0}}},
}

// callOf builds a call of op in mode on tensors of s, with its outputs
// allocated as the Session would.
func callOf(t *testing.T, s *accel.Session, op *accel.Op, mode accel.Mode) *accel.Call {
	t.Helper()
	c, ok := opInputs[op]
	if !ok {
		t.Fatalf("no test inputs for %s: add them to opInputs", op)
	}
	in := make([]*accel.Tensor, len(op.Inputs))
	shapes := make([][]int, len(op.Inputs))
	for i := range op.Inputs {
		var err error
		switch {
		case c.f32[i] != nil:
			in[i], err = s.NewTensor(accel.F32, c.f32[i])
		case c.i32[i] != nil:
			in[i], err = s.FromInt32(c.i32[i], len(c.i32[i]))
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		shapes[i] = in[i].Shape()
	}
	outShapes, err := op.Shapes(shapes, c.params)
	if err != nil {
		t.Fatalf("%s test inputs: %v", op, err)
	}
	out := make([]*accel.Tensor, len(outShapes))
	for i, shape := range outShapes {
		if out[i], err = s.NewTensor(accel.F32, shape); err != nil {
			t.Fatal(err)
		}
	}
	return &accel.Call{Op: op, Mode: mode, In: in, Out: out, Params: c.params, WantScalar: op.WantsScalar(c.params)}
}

// TestKernelErrors calls every kernel in every mode where it cannot run:
// on a backend without a GPU, and with a context that has ended. The
// errors must wrap the cause and name neither the backend nor the
// operation, which the Session and the caller add. The tensors are ref's:
// the kernels read only their shapes before these checks.
func TestKernelErrors(t *testing.T) {
	s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	none := newBackend(false)
	none.reason = "no GPU here"
	present := newBackend(false)
	present.dev = fakeDevice(nil)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name string
		b    *Backend
		ctx  context.Context
		is   error
		want string
	}{
		{"unavailable", none, t.Context(), accel.ErrDevice, "device failure: unavailable: no GPU here"},
		{"interrupted", present, cancelled, context.Canceled, "interrupted: context canceled"},
	}
	for _, tc := range tests {
		for _, mode := range modes {
			for _, op := range accel.Ops() {
				if slices.Contains(withoutKernels, op) {
					continue
				}
				t.Run(tc.name+"/"+mode.String()+"/"+op.Name, func(t *testing.T) {
					err := tc.b.Kernel(op, mode)(tc.ctx, callOf(t, s, op, mode))
					if !errors.Is(err, tc.is) || err.Error() != tc.want {
						t.Errorf("error %q, want %q wrapping %v", err, tc.want, tc.is)
					}
				})
			}
		}
	}
}
