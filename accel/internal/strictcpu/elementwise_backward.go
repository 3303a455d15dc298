package strictcpu

import "github.com/accelnode/accelnode/accel"

func (b *Kernels) elementBackwardTable() accel.Kernels {
	return accel.Kernels{}
}
