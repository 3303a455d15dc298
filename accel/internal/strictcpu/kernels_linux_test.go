package strictcpu

import (
	"syscall"
	"testing"
	"unsafe"
)

// guarded returns a page of float32s between two pages that may not be
// touched, so that any access before its first element or after its last
// one faults.
func guarded(t *testing.T) []float32 {
	t.Helper()
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	if err := syscall.Mprotect(mem[2*page:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[page])), page/4)
}

// TestKernelsStayInBounds runs the kernels on data that ends, or starts, at
// the edge of inaccessible memory: a read or write one element too far
// crashes the test. The masked tails of the taps must not touch the lanes
// they leave out.
func TestKernelsStayInBounds(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *kernels) {
		if k.taps == nil {
			t.Skip("no SIMD kernels at this level")
		}
		r := newRand(36)
		xp, yp := guarded(t), guarded(t)
		copy(xp, randF32(r, len(xp)))
		for n := 1; n <= 200; n++ {
			kw, kh, nc, dil, rs, cs := 3, 2, 2, 2, 7, 20
			need := (nc-1)*cs + (kh-1)*rs + (kw-1)*dil + n
			for _, at := range []int{0, len(xp) - need} { // at the start, at the end
				x := xp[at : at+need]
				yat := 0
				if at > 0 {
					yat = len(yp) - n
				}
				y := yp[yat : yat+n]
				k.taps(y, x, dil, rs, cs, xp[:nc*kh*kw], kw, kh, nc, tapsMode(n%3), 1)
				k.axpy(y, x[:n], 0.5)
			}
		}
		if k.micro == nil {
			return
		}
		for _, kc := range []int{1, 3, 4, 5} {
			a := xp[len(xp)-kc*k.mr:]
			b := yp[:kc*k.nr]
			c := make([]float32, k.mr*k.nr)
			k.micro(&a[0], &b[0], &c[0], kc, k.nr)
			c2 := yp[len(yp)-k.mr*k.nr:]
			k.micro(&xp[0], &b[0], &c2[0], kc, k.nr)
		}
	})
}
