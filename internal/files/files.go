// Package files reads the files an operator names (guest modules, models):
// regular files only, read whole up to a bound.
package files

import (
	"fmt"
	"io"
	"os"

	"github.com/accelnode/accelnode/internal/bytesize"
)

// ReadRegular reads a whole regular file of at most limit bytes. A
// device, a FIFO or a directory is refused before it is read, and a file
// that grows past the limit while it is read is refused too.
func ReadRegular(path string, limit int64) ([]byte, error) {
	// Stat before opening: opening a FIFO blocks until a writer comes.
	before, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, before.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(before, info) {
		return nil, fmt.Errorf("%s changed while it was opened", path)
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%s is %s, over the %s limit", path, bytesize.Format(info.Size()), bytesize.Format(limit))
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew past the %s limit while it was read", path, bytesize.Format(limit))
	}
	return data, nil
}
