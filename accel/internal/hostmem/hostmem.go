// Package hostmem is tensor storage in the node's own memory, for backends
// that compute on the CPU: Go slices, so kernels index them directly and
// Write and Read are plain copies.
package hostmem

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
)

// Buffer holds a tensor's elements: F for f32, I for i32.
type Buffer struct {
	F []float32
	I []int32
}

// Free hands the storage back. Large buffers go to a pool of their exact
// size, so that the next tensor of that size (the same layer's output in
// the next run of a model, say) takes memory that is already mapped;
// Alloc clears what it reuses.
func (b *Buffer) Free() {
	release(free.f, b.F)
	release(free.i, b.I)
	b.F, b.I = nil, nil
}

// words views the elements as raw 32-bit words.
func (b *Buffer) words() []uint32 {
	if b.F != nil {
		return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b.F))), len(b.F))
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b.I))), len(b.I))
}

// Alloc returns zero-filled storage for n elements of dt.
func Alloc(dt accel.DType, n int) (*Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: %d elements", accel.ErrInvalid, n)
	}
	switch dt {
	case accel.F32:
		if f := reuse(free.f, n); f != nil {
			return &Buffer{F: f}, nil
		}
		return &Buffer{F: make([]float32, n)}, nil
	case accel.I32:
		if i := reuse(free.i, n); i != nil {
			return &Buffer{I: i}, nil
		}
		return &Buffer{I: make([]int32, n)}, nil
	}
	return nil, fmt.Errorf("%w: dtype %v", accel.ErrInvalid, dt)
}

// Buffers of at least pooledElements elements are kept by exact size when
// freed, up to pooledBytes in all: enough for the activations of a
// network's run, so that the next run takes memory that is mapped
// already instead of faulting fresh pages in. The pool outlives garbage
// collections (a run that allocates gigabytes collects many times); what
// it would hold beyond its bound goes to the collector.
const (
	pooledElements = 1 << 14
	pooledBytes    = 256 << 20
)

// free holds the pooled slices by length, and their bytes in all. The
// maps are made once and never replaced; the mutex guards their contents.
var free = struct {
	sync.Mutex
	f     map[int][][]float32
	i     map[int][][]int32
	bytes int
}{f: map[int][][]float32{}, i: map[int][][]int32{}}

// reuse returns a cleared pooled slice of n elements from pool, or nil.
func reuse[E float32 | int32](pool map[int][][]E, n int) []E {
	if n < pooledElements {
		return nil
	}
	free.Lock()
	l := pool[n]
	if len(l) == 0 {
		free.Unlock()
		return nil
	}
	e := l[len(l)-1]
	pool[n] = l[:len(l)-1]
	free.bytes -= 4 * n
	free.Unlock()
	clear(e)
	return e
}

// release keeps e in pool where it is large and the pool has room for it.
func release[E float32 | int32](pool map[int][][]E, e []E) {
	n := len(e)
	if n < pooledElements {
		return
	}
	free.Lock()
	defer free.Unlock()
	if free.bytes+4*n > pooledBytes {
		return
	}
	free.bytes += 4 * n
	pool[n] = append(pool[n], e)
}

// littleEndian is true when the host stores words in little-endian order, so
// element bytes can be copied as they are.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// span returns the words of buf from element first on, with room for n bytes.
func span(buf accel.Buffer, first, n int) ([]uint32, error) {
	b, ok := buf.(*Buffer)
	if !ok {
		return nil, fmt.Errorf("%w: buffer of type %T is not in host memory", accel.ErrInvalid, buf)
	}
	w := b.words()
	if n%4 != 0 || first < 0 || first > len(w) || n/4 > len(w)-first {
		return nil, fmt.Errorf("%w: %d bytes at element %d outside %d elements", accel.ErrInvalid, n, first, len(w))
	}
	return w[first : first+n/4], nil
}

// Write copies little-endian elements from src into dst from element first.
func Write(dst accel.Buffer, first int, src []byte) error {
	w, err := span(dst, first, len(src))
	if err != nil {
		return err
	}
	if littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w)), src)
		return nil
	}
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(src[4*i:])
	}
	return nil
}

// Read copies elements from element first of src into dst, little-endian.
func Read(src accel.Buffer, first int, dst []byte) error {
	w, err := span(src, first, len(dst))
	if err != nil {
		return err
	}
	if littleEndian {
		copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w)))
		return nil
	}
	for i, v := range w {
		binary.LittleEndian.PutUint32(dst[4*i:], v)
	}
	return nil
}

// F32 returns the elements of an f32 tensor stored in host memory.
func F32(t *accel.Tensor) []float32 { return t.Buffer().(*Buffer).F }

// I32 returns the elements of an i32 tensor stored in host memory.
func I32(t *accel.Tensor) []int32 { return t.Buffer().(*Buffer).I }
