package hostmem

import (
	"errors"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

func TestAllocWriteRead(t *testing.T) {
	if _, err := Alloc(accel.DType(7), 4); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("alloc of dtype 7: %v, want ErrInvalid", err)
	}
	for _, le := range []bool{true, false} {
		saved := littleEndian
		littleEndian = le
		for _, dt := range []accel.DType{accel.F32, accel.I32} {
			buf, err := Alloc(dt, 5)
			if err != nil {
				t.Fatalf("alloc %v: %v", dt, err)
			}
			zero := make([]byte, 20)
			got := make([]byte, 20)
			if err := Read(buf, 0, got); err != nil || !slices.Equal(got, zero) {
				t.Errorf("le=%v %v: fresh buffer reads %v, %v; want zeros", le, dt, got, err)
			}
			src := []byte{1, 2, 3, 4, 5, 6, 7, 8}
			if err := Write(buf, 2, src); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := Read(buf, 0, got); err != nil {
				t.Fatalf("read: %v", err)
			}
			want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}
			if !slices.Equal(got, want) {
				t.Errorf("le=%v %v: read %v, want %v", le, dt, got, want)
			}
			part := make([]byte, 4)
			if err := Read(buf, 3, part); err != nil || !slices.Equal(part, []byte{5, 6, 7, 8}) {
				t.Errorf("le=%v %v: read element 3: %v, %v", le, dt, part, err)
			}
			if err := Write(buf, 4, src); !errors.Is(err, accel.ErrInvalid) {
				t.Errorf("write past the end: %v, want ErrInvalid", err)
			}
			buf.Free()
		}
		littleEndian = saved
	}
	// The element values, not just the bytes, must be little-endian.
	buf, err := Alloc(accel.F32, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(buf, 0, accel.EncodeFloat32([]float32{1.5, -2})); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(buf.F, []float32{1.5, -2}) {
		t.Errorf("f32 round trip %v", buf.F)
	}
}

// TestPoolReuse: a large buffer freed comes back cleared for the next
// tensor of its size, never to two tensors at once, and small ones and
// other sizes are not pooled.
func TestPoolReuse(t *testing.T) {
	n := pooledElements + 3
	a, err := Alloc(accel.F32, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.F {
		a.F[i] = 7
	}
	first := &a.F[0]
	a.Free()
	b, _ := Alloc(accel.F32, n)
	c, _ := Alloc(accel.F32, n)
	if &b.F[0] != first {
		t.Error("a freed buffer was not reused for the next tensor of its size")
	}
	if &c.F[0] == &b.F[0] {
		t.Fatal("one buffer given to two tensors")
	}
	for i, v := range b.F {
		if v != 0 {
			t.Fatalf("reused buffer holds %v at %d, want zeros", v, i)
		}
	}
	other, _ := Alloc(accel.F32, n+1)
	if &other.F[0] == first {
		t.Error("a buffer reused for another size")
	}
	i32, _ := Alloc(accel.I32, n)
	if len(i32.I) != n {
		t.Errorf("i32 buffer of %d elements, want %d", len(i32.I), n)
	}
	for _, x := range []*Buffer{b, c, other, i32} {
		x.Free()
	}
	free.Lock()
	held := free.bytes
	free.Unlock()
	if held > pooledBytes {
		t.Errorf("the pool holds %d bytes, over its %d", held, pooledBytes)
	}
}
