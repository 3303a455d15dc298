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
type limitedAllocator struct {
	limit   uint64 // bytes
	pages   atomic.Uint32
	refused atomic.Bool
}

func (a *limitedAllocator) Allocate(capacity, _ uint64) experimental.LinearMemory {
	return &limitedMemory{a: a, buf: make([]byte, 0, min(capacity, a.limit))}
}

type limitedMemory struct {
	a   *limitedAllocator
	buf []byte
}

func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		m.a.refused.Store(true)
		return nil
	}
	// Memory never shrinks, so the bytes between len and cap are still the
	// zeros they were allocated as.
	if n := uint64(len(m.buf)); size > uint64(cap(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-n)...)
	} else if size > n {
		m.buf = m.buf[:size]
	}
	m.a.pages.Store(uint32(len(m.buf) / pageSize))
	return m.buf
}

func (m *limitedMemory) Free() { m.buf = nil }
