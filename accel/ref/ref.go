// Package ref is the reference backend: the numerics contract
// (docs/determinism.md) on the CPU, bit for bit, in pure Go with AVX2 and
// AVX-512 inner loops chosen at run time (accel/internal/strictcpu). It is
// the oracle every other backend is checked against. Its kernels are the
// same in every mode.
//
// "ref-portable" is the same on the portable Go loops alone, for comparing
// the SIMD loops against (accelnode conformance --backends ref,ref-portable).
package ref

import (
	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/accel/internal/strictcpu"
	"github.com/accelnode/accelnode/internal/cpuinfo"
)

func init() {
	accel.Register("ref", func(o accel.Options) accel.Backend { return New(o.Threads) })
	accel.Register("ref-portable", func(o accel.Options) accel.Backend { return NewPortable(o.Threads) })
}

// Backend is the reference backend. It is safe for concurrent use.
type Backend struct {
	name    string
	kernels *strictcpu.Kernels
	table   accel.Kernels
}

var _ accel.Backend = (*Backend)(nil)

// New returns a reference backend computing with threads goroutines; threads
// <= 0 means one per core (GOMAXPROCS). Its inner loops are the fastest this
// CPU runs; every choice gives the same bits.
func New(threads int) *Backend { return newBackend("ref", strictcpu.New(threads)) }

// NewPortable returns a reference backend on the portable Go loops alone,
// registered as "ref-portable".
func NewPortable(threads int) *Backend {
	return newBackend("ref-portable", strictcpu.NewPortable(threads))
}

func newBackend(name string, k *strictcpu.Kernels) *Backend {
	return &Backend{name: name, kernels: k, table: k.Table()}
}

func (b *Backend) Name() string { return b.name }

func (b *Backend) Status() accel.Status {
	speed := 1 // above ref-portable, so auto takes the SIMD kernels
	if b.kernels.Portable() {
		speed = 0
	}
	return accel.Status{
		Name:         b.name,
		Available:    true,
		Device:       cpuinfo.Model() + ", " + b.kernels.Level() + " kernels",
		Modes:        accel.AllModes,
		FastIsStrict: true,
		Speed:        speed,
		Threads:      b.kernels.Threads(),
	}
}

// Kernel returns the contract's kernel for op in every mode.
func (b *Backend) Kernel(op *accel.Op, _ accel.Mode) accel.Kernel { return b.table[op] }

func (b *Backend) Close() error { return nil }

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return hostmem.Alloc(dt, n) }

func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}
