package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("x,y,label\n")
	for i := range 200 {
		fmt.Fprintf(&csv, "%d,%d,%d\n", i%20, i/20, i%10)
	}
	good := filepath.Join(dir, "emb.csv")
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(good, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("x,y,label\n1,2,3\n1,NaN,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		written string // the picture it writes
		wantErr string
	}{
		{"png beside the csv", []string{good}, filepath.Join(dir, "emb.png"), ""},
		{"svg, flags after the file", []string{good, "-o", filepath.Join(dir, "e.svg"), "-title", "t"}, filepath.Join(dir, "e.svg"), ""},
		{"bad point", []string{"-o", filepath.Join(dir, "bad.png"), bad}, "", bad + ":3: y is NaN, want a finite number"},
		{"missing file", []string{filepath.Join(dir, "none.csv")}, "", "no such file"},
		{"pdf", []string{"-o", filepath.Join(dir, "e.pdf"), good}, "", "want a .png or .svg file"},
		{"no file", nil, "", "name one EMBEDDING.csv"},
		{"two files", []string{good, bad}, "", "not 2 files"},
		{"opacity", []string{"-alpha", "1.5", good}, "", "-alpha 1.5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := accelnode(t, append([]string{"plot"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if code := exitCode(context.Background(), err, &bytes.Buffer{}); code != exitNode {
					t.Errorf("exit code %d, want %d", code, exitNode)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if want := tc.written + ": 200 points\n"; stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
			if info, err := os.Stat(tc.written); err != nil || info.Size() == 0 {
				t.Errorf("%s: %v", tc.written, err)
			}
		})
	}
}
