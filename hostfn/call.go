package hostfn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
)

// call is one host function call: the guest's memory and arguments. Its
// methods check every pointer, length and size the guest passes.
type call struct {
	ctx  context.Context
	in   *Instance
	mem  api.Memory
	args []uint64
}

func (c *call) u32(i int) uint32 { return api.DecodeU32(c.args[i]) }

// errnoError is an error with an explicit errno.
type errnoError struct {
	errno abi.Errno
	msg   string
}

func (e *errnoError) Error() string { return e.msg }

func fail(errno abi.Errno, format string, args ...any) error {
	return &errnoError{errno: errno, msg: fmt.Sprintf(format, args...)}
}

// view returns guest memory [ptr, ptr+n) without copying. It is valid until
// the guest's memory grows, which cannot happen during a host call.
func (c *call) view(ptr uint32, n uint64, what string) ([]byte, error) {
	if n > math.MaxUint32 {
		return nil, fail(abi.EOVERFLOW, "%s: %d bytes exceed the 4 GiB address space", what, n)
	}
	// The end is checked in 64 bits: wazero's own check adds in 32 bits,
	// so a pointer near 4 GiB would wrap past it.
	size := uint64(c.mem.Size())
	if uint64(ptr)+n > size {
		return nil, fail(abi.EFAULT, "%s: bytes [%d, %d) lie outside guest memory of %d bytes", what, ptr, uint64(ptr)+n, size)
	}
	b, ok := c.mem.Read(ptr, uint32(n))
	if !ok {
		return nil, fail(abi.EFAULT, "%s: bytes [%d, %d) lie outside guest memory of %d bytes", what, ptr, uint64(ptr)+n, size)
	}
	return b, nil
}

// elements returns the view of count elements of size bytes at ptr.
func (c *call) elements(ptr, count uint32, size int, what string) ([]byte, error) {
	return c.view(ptr, uint64(count)*uint64(size), what)
}

// shape reads rank u32 dimensions at ptr.
func (c *call) shape(ptr, rank uint32) ([]int, error) {
	if rank == 0 || rank > abi.MaxRank {
		return nil, fail(abi.EINVAL, "rank %d not in 1..%d", rank, abi.MaxRank)
	}
	b, err := c.elements(ptr, rank, 4, "shape")
	if err != nil {
		return nil, err
	}
	shape := make([]int, rank)
	for i := range shape {
		shape[i] = int(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return shape, nil
}

// params reads n little-endian u32 fields at ptr.
func (c *call) params(ptr uint32, n int, what string) ([]uint32, error) {
	b, err := c.elements(ptr, uint32(n), 4, what)
	if err != nil {
		return nil, err
	}
	p := make([]uint32, n)
	for i := range p {
		p[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return p, nil
}

// tensor resolves a handle argument.
func (c *call) tensor(i int, what string) (*accel.Tensor, error) {
	h := c.u32(i)
	t, ok := c.in.handles[h]
	if !ok {
		if h == 0 {
			return nil, fail(abi.EBADHANDLE, "%s: handle 0 is never valid", what)
		}
		return nil, fail(abi.EBADHANDLE, "%s: handle %d is not a live tensor of this guest", what, h)
	}
	return t, nil
}

// op runs f, which produces a tensor, and writes its new handle at out. The
// slot and a free handle number are checked first, so that a bad pointer
// never costs an operation or leaks a tensor.
func (c *call) op(out uint32, f func() (*accel.Tensor, error)) error {
	slot, err := c.view(out, 4, "output handle")
	if err != nil {
		return err
	}
	if c.in.next == 0 { // the counter wrapped: 2^32-1 handles issued
		return fail(abi.ELIMIT, "handle numbers exhausted")
	}
	t, err := f()
	if err != nil {
		return err
	}
	h := c.in.next
	c.in.next++
	c.in.handles[h] = t
	binary.LittleEndian.PutUint32(slot, h)
	return nil
}

// errno maps an error from the session, the engine or a backend to the ABI.
func errno(err error) abi.Errno {
	var ee *errnoError
	switch {
	case err == nil:
		return abi.OK
	case errors.As(err, &ee):
		return ee.errno
	case errors.Is(err, engine.ErrBudgetExhausted):
		return abi.EBUDGET
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return abi.ECANCELED
	case errors.Is(err, accel.ErrFreed), errors.Is(err, accel.ErrForeign):
		return abi.EBADHANDLE
	case errors.Is(err, accel.ErrShape):
		return abi.ESHAPE
	case errors.Is(err, accel.ErrOverflow):
		return abi.EOVERFLOW
	case errors.Is(err, accel.ErrInvalid):
		return abi.EINVAL
	case errors.Is(err, accel.ErrUnsupported):
		return abi.EUNSUPPORTED
	case errors.Is(err, accel.ErrOutOfMemory):
		return abi.ENOMEM
	case errors.Is(err, accel.ErrTooMany):
		return abi.ELIMIT
	case errors.Is(err, models.ErrNotFound):
		return abi.ENOENT
	}
	return abi.EDEVICE // accel.ErrDevice, or anything else a backend returns
}
