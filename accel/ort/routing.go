package ort

import "github.com/accelnode/accelnode/accel"

// Every run on ONNX Runtime costs about 4 to 12 µs before any arithmetic:
// wrapping the tensors, the run options and the context watch, and ONNX
// Runtime's own dispatch. The contract's CPU kernels start at a fraction of
// a microsecond, so below some size they finish first. The rule is one
// threshold per operation on the call's size: a call smaller than its
// operation's threshold runs on the contract's kernel, at the same speed
// as on ref, and creates no ONNX Runtime session.
//
// The thresholds are where the two kernels took the same time on the
// shapes of the cnn example guest and a sweep around them (BenchmarkCNN and
// BenchmarkCrossover, on a two-core x86-64 machine with AVX-512), rounded
// to a power of two. Where the two are within a microsecond of each other
// the choice matters little either way.
var smallBelow = map[*accel.Op]int{
	// m·k·n multiply-adds: a 16×16×16 product ties; a single row times a
	// 784×10 layer (7,840) is twice as fast on ONNX Runtime.
	accel.MatMul: 1 << 12,
	// Output elements times the filter's size: four 3×3 filters over a
	// 4-channel 4×4 image (2,304) tie.
	accel.Conv2D: 1 << 12,
	// Output elements times the window: up to about 2,000 comparisons the
	// contract's kernel is faster.
	accel.MaxPool2D: 1 << 11,
	// Elements. The contract's relu and add stream at 0.5 ns an element,
	// its add_bias and softmax (an exact exp) take 6 to 9 ns.
	accel.Relu:    1 << 13,
	accel.Add:     1 << 13,
	accel.AddBias: 1 << 10,
	accel.Softmax: 1 << 9,
	// Elements of x; not measured apart: clip streams as relu does, and
	// global_avgpool reads its input once as they do.
	accel.Clip:          1 << 13,
	accel.GlobalAvgPool: 1 << 13,
}

// small reports whether a call is below its operation's threshold.
func small(c *accel.Call) bool {
	limit, ok := smallBelow[c.Op]
	return ok && callSize(c) < limit
}

// callSize is the measure of a call that smallBelow bounds, saturating at
// the largest int.
func callSize(c *accel.Call) int {
	out := c.Out[0].Len()
	switch c.Op {
	case accel.MatMul:
		_, k, _, _ := accel.MatMulDims(c.In[0].Shape(), c.In[1].Shape(), c.Params.(accel.MatMulParams))
		return mulSat(out, k)
	case accel.Conv2D:
		w := c.In[1].Shape()
		return mulSat(out, w[1]*w[2]*w[3])
	case accel.MaxPool2D:
		p := c.Params.(accel.Pool2DParams)
		return mulSat(out, mulSat(p.KernelH, p.KernelW))
	case accel.GlobalAvgPool:
		return c.In[0].Len()
	}
	return out
}

// mulSat is a·b for non-negative a and b, or the largest int if it
// overflows.
func mulSat(a, b int) int {
	const maxInt = int(^uint(0) >> 1)
	if a != 0 && b > maxInt/a {
		return maxInt
	}
	return a * b
}
