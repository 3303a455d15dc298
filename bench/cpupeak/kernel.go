package cpupeak

import "golang.org/x/sys/cpu"

// kernel is one FMA-throughput loop.
type kernel struct {
	name  string // as reported in CPU.FMAKernel and Peak.Kernel
	bits  int    // vector width in bits
	lanes int    // float32 lanes per vector
	accs  int    // independent accumulator vectors, so FMAs per iteration
	ok    bool   // whether this machine and OS can run it
	need  string // what it needs, for messages where it cannot run

	// run does n iterations over acc[:accs*lanes]; x and y are the
	// operands the kernel's recurrence mixes in.
	run func(acc []float32, n int, x, y float32)

	// x and y are the operands MeasureFP32 uses: they keep every
	// accumulator normal and finite however long it runs, since subnormals
	// would slow the FPU down and NaNs or infinities could too.
	x, y float32
}

// scalarAccs is the scalar kernel's number of chains: enough for two FMA
// units at four cycles, or a multiply and an add where there is no FMA.
const scalarAccs = 12

// scalarKernel is the portable fallback.
var scalarKernel = kernel{
	name: "scalar", bits: 32, lanes: 1, accs: scalarAccs, ok: true,
	run: fmaScalar,
	// acc*0.5 + 0.75 tends to 1.5 from any start.
	x: 0.5, y: 0.75,
}

// allKernels lists the kernels this build has, best first, whether or not
// the machine can run them.
func allKernels() []kernel {
	ks := archKernels()
	for i := range ks {
		// acc += 2^-10 * 2^-10 climbs from 1 to 16 and stays there:
		// from 16 on, 2^-20 is half an ulp and rounds to even, away.
		ks[i].x, ks[i].y = 1.0/1024, 1.0/1024
	}
	return append(ks, scalarKernel)
}

// pick returns the best kernel the machine can run.
func pick() kernel {
	for _, k := range allKernels() {
		if k.ok {
			return k
		}
	}
	return scalarKernel
}

// fmaScalar runs n iterations of acc = acc*x + y on each of scalarAccs
// accumulators. Multiplying the accumulator itself keeps the compiler from
// hoisting the product out of the loop; Go may fuse each step into one FMA
// instruction (arm64 does) or not (amd64 before v3), either way two FLOPs.
//
//go:noinline
func fmaScalar(acc []float32, n int, x, y float32) {
	acc = acc[:scalarAccs]
	a0, a1, a2, a3 := acc[0], acc[1], acc[2], acc[3]
	a4, a5, a6, a7 := acc[4], acc[5], acc[6], acc[7]
	a8, a9, a10, a11 := acc[8], acc[9], acc[10], acc[11]
	for range n {
		a0 = a0*x + y
		a1 = a1*x + y
		a2 = a2*x + y
		a3 = a3*x + y
		a4 = a4*x + y
		a5 = a5*x + y
		a6 = a6*x + y
		a7 = a7*x + y
		a8 = a8*x + y
		a9 = a9*x + y
		a10 = a10*x + y
		a11 = a11*x + y
	}
	acc[0], acc[1], acc[2], acc[3] = a0, a1, a2, a3
	acc[4], acc[5], acc[6], acc[7] = a4, a5, a6, a7
	acc[8], acc[9], acc[10], acc[11] = a8, a9, a10, a11
}

// features lists the vector features x/sys/cpu reports that matter here.
func features() []string {
	all := []struct {
		name string
		has  bool
	}{
		{"avx512f", cpu.X86.HasAVX512F},
		{"avx512vl", cpu.X86.HasAVX512VL},
		{"avx2", cpu.X86.HasAVX2},
		{"fma", cpu.X86.HasFMA},
		{"avx", cpu.X86.HasAVX},
		{"sse4.2", cpu.X86.HasSSE42},
		{"neon", cpu.ARM64.HasASIMD},
		{"sve", cpu.ARM64.HasSVE},
	}
	fs := []string{}
	for _, f := range all {
		if f.has {
			fs = append(fs, f.name)
		}
	}
	return fs
}
