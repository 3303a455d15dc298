//go:build linux

package hostfn

import (
	"strconv"
	"syscall"
)

// reserveFuzzMemory maps size bytes without committing them, as the engine
// reserves a guest's memory: the kernel backs a page only once it is
// written, so guest memory just under 4 GiB costs what a test touches. It
// returns nil where the address space is too small.
func reserveFuzzMemory(size uint64) []byte {
	if strconv.IntSize < 64 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return b
}

// releaseFuzzMemory hands the pages of b, which starts on a page boundary,
// back to the kernel: they read as zeros again and cost nothing.
func releaseFuzzMemory(b []byte) {
	if err := syscall.Madvise(b, syscall.MADV_DONTNEED); err != nil {
		clear(b)
	}
}
