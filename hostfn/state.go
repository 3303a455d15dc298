package hostfn

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
)

// State is what an Actor keeps between calls: its instance's memory and
// globals, and its tensors with their handle numbers and the counters that
// number new handles.
type State struct {
	Reactor    *engine.Snapshot
	Tensors    []SavedTensor // by ascending handle
	NextHandle uint32
	Models     []SavedModel // by ascending handle
	NextModel  uint32
}

// SavedTensor is one tensor of a State.
type SavedTensor struct {
	Handle uint32
	DType  accel.DType
	Shape  []int
	Data   []byte // the elements, little-endian

	t *accel.Tensor // the live tensor saved or restored, while unchanged
}

// SavedModel is an open model handle of a State: the model is looked up
// again by its sha256.
type SavedModel struct {
	Handle uint32
	SHA256 string
}

// stateVersion is the version of the encoding MarshalBinary writes:
//
//	u32 version (1)
//	u32 pages, u32 globals, u64 × globals
//	u32 segments, then each: u32 offset, u32 length, bytes
//	u32 next handle, u32 tensors, then each: u32 handle, u32 dtype,
//	    u32 rank, u32 × rank dims, the elements' bytes (from the shape)
//	u32 next model, u32 models, then each: u32 handle, 32 bytes sha256
//
// Numbers are little-endian.
const stateVersion = 1

// MarshalBinary encodes s.
func (s *State) MarshalBinary() ([]byte, error) {
	snap := s.Reactor
	if snap == nil {
		return nil, errors.New("encode actor state: no instance snapshot")
	}
	size := 16 + 8*len(snap.Globals) + 12
	for _, seg := range snap.Memory {
		size += 8 + len(seg.Data)
	}
	for _, t := range s.Tensors {
		size += 12 + 4*len(t.Shape) + len(t.Data)
	}
	size += 8 + 36*len(s.Models)
	b := make([]byte, 0, size)
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u32(stateVersion)
	u32(snap.Pages)
	u32(uint32(len(snap.Globals)))
	for _, g := range snap.Globals {
		b = binary.LittleEndian.AppendUint64(b, g)
	}
	u32(uint32(len(snap.Memory)))
	for _, seg := range snap.Memory {
		u32(seg.Offset)
		u32(uint32(len(seg.Data)))
		b = append(b, seg.Data...)
	}
	u32(s.NextHandle)
	u32(uint32(len(s.Tensors)))
	for _, t := range s.Tensors {
		n, err := accel.NumElements(t.Shape)
		if err != nil || !t.DType.Valid() || n*t.DType.Size() != len(t.Data) {
			return nil, fmt.Errorf("encode actor state: tensor %d of %s%v holds %d bytes", t.Handle, t.DType, t.Shape, len(t.Data))
		}
		u32(t.Handle)
		u32(uint32(t.DType))
		u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			u32(uint32(d))
		}
		b = append(b, t.Data...)
	}
	u32(s.NextModel)
	u32(uint32(len(s.Models)))
	for _, m := range s.Models {
		sum, err := hex.DecodeString(m.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("encode actor state: model handle %d has sha256 %q", m.Handle, m.SHA256)
		}
		u32(m.Handle)
		b = append(b, sum...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote, checking that every
// part fits together: segments in order inside the memory, tensors of
// valid types and shapes with their bytes, handles in ascending order
// below the counter. The bytes of segments and tensors alias b.
func (s *State) UnmarshalBinary(b []byte) error {
	d := &decoder{b: b}
	if v := d.u32(); d.err == nil && v != stateVersion {
		return fmt.Errorf("decode actor state: version %d, want %d", v, stateVersion)
	}
	snap := &engine.Snapshot{Pages: d.u32()}
	if snap.Pages > engine.MaxMemoryPages {
		d.fail("memory of %d pages", snap.Pages)
	}
	n := d.count(8)
	for range n {
		snap.Globals = append(snap.Globals, d.u64())
	}
	n = d.count(8)
	end := uint64(0)
	for range n {
		off, size := d.u32(), d.u32()
		if uint64(off) < end || uint64(off)+uint64(size) > uint64(snap.Pages)<<16 {
			d.fail("memory segment at %d of %d bytes is out of order or outside %d pages", off, size, snap.Pages)
		}
		end = uint64(off) + uint64(size)
		snap.Memory = append(snap.Memory, engine.Segment{Offset: off, Data: d.bytes(int(size))})
	}
	s.Reactor = snap
	s.NextHandle = d.u32()
	n = d.count(16)
	prev := uint32(0)
	for range n {
		t := SavedTensor{Handle: d.u32(), DType: accel.DType(d.u32())}
		rank := d.u32()
		if rank == 0 || rank > accel.MaxRank {
			d.fail("tensor %d of rank %d", t.Handle, rank)
			break
		}
		for range rank {
			t.Shape = append(t.Shape, int(d.u32()))
		}
		elems, err := accel.NumElements(t.Shape)
		switch {
		case err != nil || !t.DType.Valid():
			d.fail("tensor %d of %s%v", t.Handle, t.DType, t.Shape)
		case t.Handle <= prev || s.NextHandle != 0 && t.Handle >= s.NextHandle:
			d.fail("tensor handle %d out of order or not below the counter %d", t.Handle, s.NextHandle)
		}
		if d.err != nil {
			break
		}
		t.Data = d.bytes(elems * t.DType.Size())
		prev = t.Handle
		s.Tensors = append(s.Tensors, t)
	}
	s.NextModel = d.u32()
	n = d.count(36)
	prev = 0
	for range n {
		m := SavedModel{Handle: d.u32(), SHA256: hex.EncodeToString(d.bytes(32))}
		if m.Handle <= prev || s.NextModel != 0 && m.Handle >= s.NextModel {
			d.fail("model handle %d out of order or not below the counter %d", m.Handle, s.NextModel)
		}
		prev = m.Handle
		s.Models = append(s.Models, m)
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d bytes after the end", len(b)-d.off)
	}
	if d.err != nil {
		return fmt.Errorf("decode actor state: %w", d.err)
	}
	return nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.off = len(d.b)
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b)-d.off {
		d.fail("truncated")
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u32() uint32 {
	if p := d.bytes(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.bytes(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// count reads a count of entries at least min bytes each, refusing one
// that the bytes left cannot hold.
func (d *decoder) count(min int) int {
	n := d.u32()
	if uint64(n)*uint64(min) > uint64(len(d.b)-d.off) {
		d.fail("%d entries do not fit in %d bytes", n, len(d.b)-d.off)
		return 0
	}
	return int(n)
}
