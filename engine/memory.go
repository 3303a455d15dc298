package engine

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

const pageSize = 1 << 16

// limitedAllocator backs the linear memory of one invocation and refuses to
// grow it past a limit. wazero turns a refusal into memory.grow returning
// -1, which the guest may or may not survive; refused records that it
// happened so that Run can blame the limit when the guest then fails.
//
// Where the system allows, the memory is one mapping reserved up to the
// limit at the start and committed by the kernel page by page as the guest
// touches it (memory_unix.go): growing never copies, and costs what was
// grown and touched, no more. Elsewhere it is a Go slice that grows by
// copying.
type limitedAllocator struct {
	limit   uint64 // bytes
	pages   atomic.Uint32
	refused atomic.Bool
}

func (a *limitedAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	if m := reserve(a, min(max, a.limit)); m != nil {
		return m
	}
	return &sliceMemory{a: a, buf: make([]byte, 0, min(capacity, a.limit))}
}

// grown records a new size, or refuses one past the limit.
func (a *limitedAllocator) grown(size uint64) bool {
	if size > a.limit {
		a.refused.Store(true)
		return false
	}
	a.pages.Store(uint32(size / pageSize))
	return true
}

// sliceMemory is linear memory in a Go slice.
type sliceMemory struct {
	a   *limitedAllocator
	buf []byte
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if !m.a.grown(size) {
		return nil
	}
	// Memory never shrinks, so the bytes between len and cap are still the
	// zeros they were allocated as.
	if n := uint64(len(m.buf)); size > uint64(cap(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-n)...)
	} else if size > n {
		m.buf = m.buf[:size]
	}
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }
