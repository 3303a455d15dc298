package bench

import (
	"strings"

	"github.com/accelnode/accelnode/accel"
)

// gpuPart is a GPU's datasheet figures: dense FP32 without tensor cores at
// boost clock, and memory bandwidth.
type gpuPart struct {
	// match lists the words that must all appear in the driver's name.
	match         []string
	name          string
	fp32TFLOPS    float64
	bandwidthGBps float64
}

// gpuParts is searched in order, so a more specific entry (H100 NVL) comes
// before a general one (H100).
var gpuParts = []gpuPart{
	{[]string{"h200", "nvl"}, "H200 NVL", 60, 4800},
	{[]string{"h200"}, "H200 SXM", 67, 4800},
	{[]string{"h100", "nvl"}, "H100 NVL", 60, 3900},
	{[]string{"h100", "pcie"}, "H100 PCIe", 51, 2000},
	{[]string{"h100"}, "H100 SXM", 67, 3350},
	{[]string{"a100", "80gb", "pcie"}, "A100 80GB PCIe", 19.5, 1935},
	{[]string{"a100", "80gb"}, "A100 80GB SXM", 19.5, 2039},
	{[]string{"a100"}, "A100 40GB", 19.5, 1555},
	{[]string{"l40s"}, "L40S", 91.6, 864},
	{[]string{"l40"}, "L40", 90.5, 864},
	{[]string{"l4"}, "L4", 30.3, 300},
	{[]string{"a10g"}, "A10G", 31.2, 600},
	{[]string{"a10"}, "A10", 31.2, 600},
	{[]string{"t4"}, "T4", 8.1, 320},
	{[]string{"v100", "pcie"}, "V100 PCIe", 14, 900},
	{[]string{"v100"}, "V100 SXM2", 15.7, 900},
	{[]string{"rtx", "6000", "ada"}, "RTX 6000 Ada", 91.1, 960},
	{[]string{"rtx", "4090"}, "GeForce RTX 4090", 82.6, 1008},
}

// lookupGPU finds the datasheet entry for a driver's device name, matching
// whole words so that "L4" is not "L40".
func lookupGPU(name string) (gpuPart, bool) {
	words := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return r == ' ' || r == '-' || r == '_' || r == '/' || r == '(' || r == ')'
	}) {
		words[w] = true
	}
	for _, p := range gpuParts {
		all := true
		for _, m := range p.match {
			all = all && words[m]
		}
		if all {
			return p, true
		}
	}
	return gpuPart{}, false
}

// fp32LanesPerSM is how many FP32 results an NVIDIA streaming
// multiprocessor issues per clock, by compute capability; 0 where unknown.
func fp32LanesPerSM(arch string) int {
	switch arch {
	case "sm_60", "sm_70", "sm_72", "sm_75", "sm_80":
		return 64
	case "sm_61", "sm_62", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_101", "sm_103", "sm_110", "sm_120", "sm_121":
		return 128
	}
	return 0
}

// derivedFP32 is the FP32 peak from the driver's figures, SMs × lanes × 2
// (an FMA) × clock, in FLOP/s; 0 where a figure is missing.
func derivedFP32(d accel.Device) float64 {
	return float64(d.ComputeUnits) * float64(fp32LanesPerSM(d.Arch)) * 2 * float64(d.ClockMHz) * 1e6
}
