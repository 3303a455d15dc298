package cuda

import (
	"context"
	"errors"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

func TestDeviceUnavailable(t *testing.T) {
	b := &Backend{reason: "no GPU here"}
	if _, ok := b.Device(); ok {
		t.Error("Device reports a GPU for an unavailable backend")
	}
	if _, err := b.CopyBandwidth(context.Background(), 1<<20, 1); !errors.Is(err, accel.ErrDevice) {
		t.Errorf("CopyBandwidth on an unavailable backend = %v, want ErrDevice", err)
	}
}

func TestDeviceAndCopyBandwidth(t *testing.T) {
	b := gpu(t)
	d, ok := b.Device()
	if !ok || d.Kind != "gpu" || d.Name == "" || d.ComputeUnits <= 0 || d.MemoryBytes == 0 || d.Arch == "" {
		t.Fatalf("Device() = %+v, %v", d, ok)
	}
	t.Logf("device: %+v", d)
	bw, err := b.CopyBandwidth(context.Background(), 64<<20, 4)
	if err != nil || bw <= 0 {
		t.Fatalf("CopyBandwidth = %g, %v", bw, err)
	}
	t.Logf("device-to-device copy: %.0f GB/s", bw/1e9)
	if _, err := b.CopyBandwidth(context.Background(), 0, 1); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("CopyBandwidth(0 bytes) = %v, want ErrInvalid", err)
	}
}
