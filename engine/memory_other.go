//go:build !unix

package engine

import "github.com/tetratelabs/wazero/experimental"

// reserve has no mapping to offer here: memory is a Go slice.
func reserve(*limitedAllocator, uint64) experimental.LinearMemory { return nil }
