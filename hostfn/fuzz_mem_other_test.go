//go:build !linux

package hostfn

// reserveFuzzMemory has no sparse mapping to offer here: the fuzz targets
// skip guest memory just under 4 GiB.
func reserveFuzzMemory(uint64) []byte { return nil }

func releaseFuzzMemory(b []byte) { clear(b) }
