package strictcpu

import "github.com/accelnode/accelnode/accel"

func (b *Kernels) optimiserTable() accel.Kernels {
	return accel.Kernels{}
}
