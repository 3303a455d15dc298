package strictcpu

import "github.com/accelnode/accelnode/accel"

func (b *Kernels) convBackwardTable() accel.Kernels {
	return accel.Kernels{}
}
