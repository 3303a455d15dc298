package server_test

import (
	"io"
	"os"

	_ "github.com/accelnode/accelnode/accel/ref"
)

func openFile(path string) (io.Reader, error) { return os.Open(path) }

func must(r io.Reader, err error) io.Reader {
	if err != nil {
		panic(err)
	}
	return r
}
