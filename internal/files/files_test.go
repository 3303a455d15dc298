package files

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		limit      int64
		want       string // a fragment of the error; "" for success
	}{
		{"regular", small, 5, ""},
		{"over the limit", small, 4, "over the 4B limit"},
		{"directory", dir, 1 << 20, "not a regular file"},
		{"device", "/dev/zero", 1 << 20, "not a regular file"},
		{"missing", filepath.Join(dir, "gone"), 1 << 20, "no such file"},
	}
	for _, tc := range tests {
		data, err := ReadRegular(tc.path, tc.limit)
		switch {
		case tc.want == "" && (err != nil || string(data) != "12345"):
			t.Errorf("%s: %q, %v", tc.name, data, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestFIFO checks that a path naming a FIFO is refused at once rather than
// read until a writer comes.
func TestFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.onnx")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("cannot make a FIFO here: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadRegular(fifo, 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("error %v, want it to say the FIFO is not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		// Opening a FIFO blocks until a writer comes: unblock it.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("reading a FIFO blocked")
	}
}
