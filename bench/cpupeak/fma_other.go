//go:build !amd64 || purego

package cpupeak

// Other architectures, and builds with the purego tag, have the portable Go
// kernel only.

func archKernels() []kernel { return nil }

// vendor returns "": there is no portable way to read it here.
func vendor() string { return "" }
