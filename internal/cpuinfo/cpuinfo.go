// Package cpuinfo describes the machine's processor for backends and
// reports.
package cpuinfo

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"sync"
)

var model = sync.OnceValue(func() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			if v := strings.TrimSpace(val); v != "" {
				return v
			}
		}
	}
	return runtime.GOARCH
})

// Model returns the CPU model name from /proc/cpuinfo, or GOARCH where there
// is none.
func Model() string { return model() }
