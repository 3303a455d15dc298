package cuda

import (
	"fmt"
	"unsafe"
)

// cuDNN constants (cudnn_graph.h, cudnn_cnn.h).
const (
	cudnnNCHW               = 0
	cudnnFloat              = 0
	cudnnCrossCorrelation   = 1
	cudnnDefaultMath        = 0
	cudnnTensorOpMath       = 1
	cudnnFMAMath            = 3 // FP32 units only: no TF32 rounding of inputs
	cudnnStatusSuccess      = 0
	cudnnStatusNotSupported = 9
)

// cudnnFwdAlgoPerf mirrors cudnnConvolutionFwdAlgoPerf_t.
type cudnnFwdAlgoPerf struct {
	algo        int32
	status      int32
	time        float32
	_           int32 // padding before the size_t
	memory      uint64
	determinism int32
	mathType    int32
	reserved    [3]int32
	_           int32
}

// cudnnAPI is the part of cuDNN the fast conv2d calls: the classic
// descriptor API, which cuDNN 9 still ships.
type cudnnAPI struct {
	lib *library

	cudnnGetVersion                         func() uint64
	cudnnGetErrorString                     func(status int32) string
	cudnnCreate                             func(h *uintptr) int32
	cudnnDestroy                            func(h uintptr) int32
	cudnnSetStream                          func(h, stream uintptr) int32
	cudnnCreateTensorDescriptor             func(d *uintptr) int32
	cudnnDestroyTensorDescriptor            func(d uintptr) int32
	cudnnSetTensor4dDescriptor              func(d uintptr, format, dtype int32, n, c, h, w int32) int32
	cudnnCreateFilterDescriptor             func(d *uintptr) int32
	cudnnDestroyFilterDescriptor            func(d uintptr) int32
	cudnnSetFilter4dDescriptor              func(d uintptr, dtype, format int32, k, c, h, w int32) int32
	cudnnCreateConvolutionDescriptor        func(d *uintptr) int32
	cudnnDestroyConvolutionDescriptor       func(d uintptr) int32
	cudnnSetConvolution2dDescriptor         func(d uintptr, padH, padW, strideH, strideW, dilH, dilW int32, mode, computeType int32) int32
	cudnnSetConvolutionGroupCount           func(d uintptr, groups int32) int32
	cudnnSetConvolutionMathType             func(d uintptr, mathType int32) int32
	cudnnGetConvolutionForwardAlgorithm_v7  func(h, x, w, conv, y uintptr, requested int32, returned *int32, perf unsafe.Pointer) int32
	cudnnGetConvolutionForwardWorkspaceSize func(h, x, w, conv, y uintptr, algo int32, bytes *uint64) int32
	cudnnConvolutionForward                 func(h uintptr, alpha *float32, xDesc uintptr, x uint64, wDesc uintptr, w uint64, conv uintptr, algo int32, ws uint64, wsBytes uint64, beta *float32, yDesc uintptr, y uint64) int32
}

func loadCUDNN(dirs []string) (*cudnnAPI, error) {
	lib, err := openLibrary("cuDNN", []string{"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"}, driverDirs(dirs))
	if err != nil {
		return nil, err
	}
	c := &cudnnAPI{lib: lib}
	err = lib.bindAll(map[string]any{
		"cudnnGetVersion":                         &c.cudnnGetVersion,
		"cudnnGetErrorString":                     &c.cudnnGetErrorString,
		"cudnnCreate":                             &c.cudnnCreate,
		"cudnnDestroy":                            &c.cudnnDestroy,
		"cudnnSetStream":                          &c.cudnnSetStream,
		"cudnnCreateTensorDescriptor":             &c.cudnnCreateTensorDescriptor,
		"cudnnDestroyTensorDescriptor":            &c.cudnnDestroyTensorDescriptor,
		"cudnnSetTensor4dDescriptor":              &c.cudnnSetTensor4dDescriptor,
		"cudnnCreateFilterDescriptor":             &c.cudnnCreateFilterDescriptor,
		"cudnnDestroyFilterDescriptor":            &c.cudnnDestroyFilterDescriptor,
		"cudnnSetFilter4dDescriptor":              &c.cudnnSetFilter4dDescriptor,
		"cudnnCreateConvolutionDescriptor":        &c.cudnnCreateConvolutionDescriptor,
		"cudnnDestroyConvolutionDescriptor":       &c.cudnnDestroyConvolutionDescriptor,
		"cudnnSetConvolution2dDescriptor":         &c.cudnnSetConvolution2dDescriptor,
		"cudnnSetConvolutionGroupCount":           &c.cudnnSetConvolutionGroupCount,
		"cudnnSetConvolutionMathType":             &c.cudnnSetConvolutionMathType,
		"cudnnGetConvolutionForwardAlgorithm_v7":  &c.cudnnGetConvolutionForwardAlgorithm_v7,
		"cudnnGetConvolutionForwardWorkspaceSize": &c.cudnnGetConvolutionForwardWorkspaceSize,
		"cudnnConvolutionForward":                 &c.cudnnConvolutionForward,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cudnnAPI) check(call string, status int32) error {
	if status == cudnnStatusSuccess {
		return nil
	}
	return fmt.Errorf("%s failed: %s (%d)", call, c.cudnnGetErrorString(status), status)
}

func (c *cudnnAPI) version() string {
	v := c.cudnnGetVersion()
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// convKey identifies a convolution's shape and parameters: one plan each.
type convKey struct {
	n, c, h, w, oc, kh, kw, oh, ow int
	padH, padW                     int
	strideH, strideW, dilH, dilW   int
	groups                         int
}

// convPlan is a convolution's cuDNN descriptors and its algorithm, chosen
// once from cuDNN's heuristics (never by timing, which can choose
// differently from run to run) and then pinned.
type convPlan struct {
	x, y, w, conv uintptr
	algo          int32
	workspace     uint64
}

// maxConvWorkspace bounds the scratch memory a cuDNN algorithm may ask for.
const maxConvWorkspace = 1 << 30

func (c *cudnnAPI) plan(h uintptr, k convKey, tf32 bool) (*convPlan, error) {
	p := &convPlan{}
	ok := false
	defer func() {
		if !ok {
			c.destroy(p)
		}
	}()
	steps := []struct {
		call string
		fn   func() int32
	}{
		{"cudnnCreateTensorDescriptor", func() int32 { return c.cudnnCreateTensorDescriptor(&p.x) }},
		{"cudnnCreateTensorDescriptor", func() int32 { return c.cudnnCreateTensorDescriptor(&p.y) }},
		{"cudnnCreateFilterDescriptor", func() int32 { return c.cudnnCreateFilterDescriptor(&p.w) }},
		{"cudnnCreateConvolutionDescriptor", func() int32 { return c.cudnnCreateConvolutionDescriptor(&p.conv) }},
		{"cudnnSetTensor4dDescriptor", func() int32 {
			return c.cudnnSetTensor4dDescriptor(p.x, cudnnNCHW, cudnnFloat, int32(k.n), int32(k.c), int32(k.h), int32(k.w))
		}},
		{"cudnnSetTensor4dDescriptor", func() int32 {
			return c.cudnnSetTensor4dDescriptor(p.y, cudnnNCHW, cudnnFloat, int32(k.n), int32(k.oc), int32(k.oh), int32(k.ow))
		}},
		{"cudnnSetFilter4dDescriptor", func() int32 {
			return c.cudnnSetFilter4dDescriptor(p.w, cudnnFloat, cudnnNCHW, int32(k.oc), int32(k.c/k.groups), int32(k.kh), int32(k.kw))
		}},
		{"cudnnSetConvolution2dDescriptor", func() int32 {
			return c.cudnnSetConvolution2dDescriptor(p.conv, int32(k.padH), int32(k.padW), int32(k.strideH), int32(k.strideW),
				int32(k.dilH), int32(k.dilW), cudnnCrossCorrelation, cudnnFloat)
		}},
		{"cudnnSetConvolutionGroupCount", func() int32 { return c.cudnnSetConvolutionGroupCount(p.conv, int32(k.groups)) }},
		{"cudnnSetConvolutionMathType", func() int32 {
			if tf32 {
				return c.cudnnSetConvolutionMathType(p.conv, cudnnTensorOpMath)
			}
			return c.cudnnSetConvolutionMathType(p.conv, cudnnFMAMath)
		}},
	}
	for _, s := range steps {
		if err := c.check(s.call, s.fn()); err != nil {
			return nil, err
		}
	}
	var perf [8]cudnnFwdAlgoPerf
	var returned int32
	if err := c.check("cudnnGetConvolutionForwardAlgorithm_v7", c.cudnnGetConvolutionForwardAlgorithm_v7(
		h, p.x, p.w, p.conv, p.y, int32(len(perf)), &returned, unsafe.Pointer(&perf[0]))); err != nil {
		return nil, err
	}
	for _, r := range perf[:min(int(returned), len(perf))] {
		if r.status != cudnnStatusSuccess || r.memory > maxConvWorkspace {
			continue
		}
		if !tf32 && r.mathType != cudnnDefaultMath && r.mathType != cudnnFMAMath {
			continue
		}
		var ws uint64
		if c.cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, r.algo, &ws) != cudnnStatusSuccess || ws > maxConvWorkspace {
			continue
		}
		p.algo, p.workspace = r.algo, ws
		ok = true
		return p, nil
	}
	return nil, fmt.Errorf("cuDNN offers no algorithm for this convolution within %d MiB of workspace", maxConvWorkspace>>20)
}

func (c *cudnnAPI) destroy(p *convPlan) {
	if p.x != 0 {
		c.cudnnDestroyTensorDescriptor(p.x)
	}
	if p.y != 0 {
		c.cudnnDestroyTensorDescriptor(p.y)
	}
	if p.w != 0 {
		c.cudnnDestroyFilterDescriptor(p.w)
	}
	if p.conv != 0 {
		c.cudnnDestroyConvolutionDescriptor(p.conv)
	}
}
