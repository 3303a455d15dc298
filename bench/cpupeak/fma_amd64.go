//go:build amd64 && !purego

package cpupeak

import (
	"strings"

	"golang.org/x/sys/cpu"
)

// The kernels in fma_amd64.s. Each runs n iterations of acc += x*y, one
// fused multiply-add per accumulator register per iteration, over the
// registers loaded from and stored back to acc.

//go:noescape
func fmaAVX2(acc *float32, n int, x, y float32)

//go:noescape
func fmaAVX512(acc *float32, n int, x, y float32)

// cpuid executes the CPUID instruction for leaf eaxArg, subleaf ecxArg.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// archKernels lists this build's vector kernels, widest first. x/sys/cpu
// reports AVX-512 and AVX2 only where the OS also saves their registers.
func archKernels() []kernel {
	return []kernel{
		{
			name: "avx512", bits: 512, lanes: 16, accs: 24,
			ok:   cpu.X86.HasAVX512F,
			need: "AVX-512F",
			run:  func(acc []float32, n int, x, y float32) { fmaAVX512(&acc[0], n, x, y) },
		},
		{
			name: "avx2", bits: 256, lanes: 8, accs: 12,
			ok:   cpu.X86.HasAVX2 && cpu.X86.HasFMA,
			need: "AVX2 and FMA",
			run:  func(acc []float32, n int, x, y float32) { fmaAVX2(&acc[0], n, x, y) },
		},
	}
}

// vendor returns CPUID's vendor string, such as "GenuineIntel".
func vendor() string {
	_, b, c, d := cpuid(0, 0)
	var s strings.Builder
	for _, r := range [...]uint32{b, d, c} { // the string's order is EBX, EDX, ECX
		for i := range 4 {
			s.WriteByte(byte(r >> (8 * i)))
		}
	}
	return strings.TrimSpace(strings.TrimRight(s.String(), "\x00"))
}
