package cuda

import (
	"context"
	"fmt"
	"time"

	"github.com/accelnode/accelnode/accel"
)

var _ accel.DeviceBackend = (*Backend)(nil)

// Device describes the GPU as its driver reports it.
func (b *Backend) Device() (accel.Device, bool) {
	if b.dev == nil {
		return accel.Device{}, false
	}
	d := b.dev
	return accel.Device{
		Kind:           "gpu",
		Name:           d.name,
		Arch:           fmt.Sprintf("sm_%d%d", d.major, d.minor),
		ComputeUnits:   d.sms,
		ClockMHz:       d.clockKHz / 1000,
		MemoryBytes:    d.totalMem,
		MemoryClockMHz: d.memClockKHz / 1000,
		MemoryBusBits:  d.memBusBits,
	}, true
}

// CopyBandwidth times reps device-to-device copies of bytes on the
// backend's stream, after one untimed copy, and returns bytes read plus
// bytes written per second. The two buffers are allocated for the
// measurement alone, outside the tensor pool, so that the pool does not keep
// them. Like the kernels' errors, its errors name neither the backend nor
// the measurement: the caller does.
func (b *Backend) CopyBandwidth(ctx context.Context, bytes int64, reps int) (float64, error) {
	if err := b.available(); err != nil {
		return 0, err
	}
	if bytes <= 0 || reps < 1 {
		return 0, fmt.Errorf("%w: bytes must be positive and reps at least 1, got %d and %d", accel.ErrInvalid, bytes, reps)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("interrupted: %w", err)
	}
	var elapsed time.Duration
	err := b.dev.do(func() error {
		drv := b.dev.libs.drv
		var src, dst uint64
		if err := drv.check("cuMemAlloc", drv.cuMemAlloc(&src, uint64(bytes))); err != nil {
			return err
		}
		defer drv.cuMemFree(src)
		if err := drv.check("cuMemAlloc", drv.cuMemAlloc(&dst, uint64(bytes))); err != nil {
			return err
		}
		defer drv.cuMemFree(dst)
		copyAll := func(n int) error {
			for range n {
				if err := drv.check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(dst, src, uint64(bytes), b.dev.stream)); err != nil {
					return err
				}
			}
			return b.dev.sync()
		}
		if err := copyAll(1); err != nil {
			return err
		}
		start := time.Now()
		if err := copyAll(reps); err != nil {
			return err
		}
		elapsed = time.Since(start)
		return nil
	})
	if err != nil {
		return 0, b.dev.failed("copy bandwidth", err)
	}
	if elapsed <= 0 {
		return 0, fmt.Errorf("%d copies of %d bytes took no measurable time", reps, bytes)
	}
	return 2 * float64(bytes) * float64(reps) / elapsed.Seconds(), nil
}
