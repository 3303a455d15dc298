package accel

import (
	"encoding/binary"
	"math"
)

// EncodeFloat32 returns v as little-endian bytes, the layout of tensor data.
func EncodeFloat32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// DecodeFloat32 reads little-endian f32 elements.
func DecodeFloat32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// EncodeInt32 returns v as little-endian bytes.
func EncodeInt32(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

// FromFloat32 creates an f32 tensor holding data, which must have as many
// elements as shape.
func (s *Session) FromFloat32(data []float32, shape ...int) (*Tensor, error) {
	return s.from(F32, EncodeFloat32(data), shape)
}

// FromInt32 creates an i32 tensor holding data.
func (s *Session) FromInt32(data []int32, shape ...int) (*Tensor, error) {
	return s.from(I32, EncodeInt32(data), shape)
}

func (s *Session) from(dt DType, data []byte, shape []int) (*Tensor, error) {
	t, err := s.NewTensor(dt, shape)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != t.Bytes() {
		s.release(t)
		return nil, errorf(ErrShape, "%d bytes of data for %s", len(data), t)
	}
	if err := s.Write(t, 0, data); err != nil {
		s.release(t)
		return nil, err
	}
	return t, nil
}

// Float32 reads a whole f32 tensor.
func (s *Session) Float32(t *Tensor) ([]float32, error) {
	if err := s.check(t, F32, "tensor"); err != nil {
		return nil, err
	}
	b := make([]byte, t.Bytes())
	if err := s.Read(t, 0, b); err != nil {
		return nil, err
	}
	return DecodeFloat32(b), nil
}
