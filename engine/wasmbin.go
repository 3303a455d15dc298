package engine

import (
	"errors"
	"fmt"
)

// minMemoryPages returns the minimum number of pages of the first memory a
// WebAssembly binary defines or imports, and whether it has one at all.
// wazero only reports exported and imported memories, but the limit must
// also apply to an unexported one, so the binary is read here. Only the
// import and memory sections are looked at; wazero has validated the rest.
func minMemoryPages(bin []byte) (uint32, bool, error) {
	r := &reader{b: bin}
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return 0, false, errors.New("not a WebAssembly binary")
	}
	r.off = 8
	for r.off < len(r.b) {
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			break
		}
		end := r.off + int(size)
		if end > len(r.b) || end < r.off {
			return 0, false, fmt.Errorf("section %d runs past the end", id)
		}
		switch id {
		case 2: // import
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				r.name()
				r.name()
				switch kind := r.byte(); kind {
				case 0x00: // function: type index
					r.u32()
				case 0x01: // table: reference type, limits
					r.byte()
					r.limits()
				case 0x02: // memory
					return r.limits(), r.err == nil, r.err
				case 0x03: // global: value type, mutability
					r.byte()
					r.byte()
				case 0x04: // tag: attribute, type index
					r.byte()
					r.u32()
				default:
					return 0, false, fmt.Errorf("unknown import kind %#x", kind)
				}
			}
		case 5: // memory
			if n := r.u32(); n > 0 {
				return r.limits(), r.err == nil, r.err
			}
		}
		r.off = end
	}
	return 0, false, r.err
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("unexpected end of binary")
	}
	r.off = len(r.b)
}

// u64 reads an unsigned LEB128 number.
func (r *reader) u64() uint64 {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("number too long")
	return 0
}

func (r *reader) u32() uint32 {
	v := r.u64()
	if v > 1<<32-1 {
		r.err = errors.New("number too large")
		return 0
	}
	return uint32(v)
}

func (r *reader) name() {
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(r.b)-r.off) {
		r.fail()
		return
	}
	r.off += int(n)
}

// limits reads a limits entry and returns its minimum, saturated to 32
// bits (a 64-bit memory that large exceeds any limit anyway).
func (r *reader) limits() uint32 {
	flags := r.byte()
	lo := r.u64()
	if flags&0x01 != 0 {
		r.u64() // maximum
	}
	if flags&0x08 != 0 {
		r.u32() // custom page size (log2)
	}
	return uint32(min(lo, 1<<32-1))
}
