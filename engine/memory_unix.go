//go:build unix

package engine

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mappedMemory is linear memory in an anonymous mapping of the whole
// limit, reserved without committing (MAP_NORESERVE): the kernel backs a
// page with memory only when the guest first touches it, so a guest pays
// for what it uses, and growing returns a longer view of the same bytes.
type mappedMemory struct {
	a   *limitedAllocator
	buf []byte // the whole mapping
}

// reserve maps size bytes, or returns nil if the system will not.
func reserve(a *limitedAllocator, size uint64) experimental.LinearMemory {
	size = (size + pageSize - 1) / pageSize * pageSize
	if size == 0 {
		size = pageSize
	}
	buf, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return &mappedMemory{a: a, buf: buf}
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	// The mapping holds the limit (or the module's maximum, past which
	// wazero asks nothing), so grown refuses whatever does not fit.
	if !m.a.grown(size) || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mappedMemory) Free() {
	if m.buf != nil {
		syscall.Munmap(m.buf)
		m.buf = nil
	}
}
