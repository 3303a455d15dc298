package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeJobRequest feeds the job decoder arbitrary bodies: it never
// panics, answers every failure with a bad-request or too-large problem,
// and what it accepts re-encodes to JSON that decodes to the same request.
func FuzzDecodeJobRequest(f *testing.F) {
	for _, seed := range []string{
		`{"module":"` + strings.Repeat("a", 64) + `"}`,
		`{"module":"x","args":["-n","3"],"env":["A=B"],"stdin":"aGk=","timeout":"3s","budget":7,"memory":"64MiB"}`,
		`{"module":"x","stdin_blob":"` + strings.Repeat("0", 64) + `","models":["mlp"],"backend":"ref","mode":"strict"}`,
		`{"module":1}`, `{"module":"x"} {}`, `{"module":"x","gpu":true}`, `[]`, `{`, ``, `null`, `{"stdin":"!!"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req JobRequest
		p := decodeJSON(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(body)), 1<<16), &req)
		if p != nil {
			if p.Status != http.StatusBadRequest && p.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("problem %+v for %q", p, body)
			}
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var back JobRequest
		if p := decodeJSON(bytes.NewReader(again), &back); p != nil {
			t.Fatalf("re-encoded request %s refused: %v", again, p)
		}
		if b2, _ := json.Marshal(back); !bytes.Equal(b2, again) {
			t.Fatalf("round trip changed %s into %s", again, b2)
		}
	})
}

// FuzzContentRange checks the Content-Range parser: a range it accepts lies
// inside the upload and is not empty.
func FuzzContentRange(f *testing.F) {
	for _, seed := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes 9-0/10", "bytes 0-10/10", "bytes -1-3/4",
		"bytes 0-99999999999999999999/1", "bits 0-1/2", "bytes 0-1/2 ", ""} {
		f.Add(seed, int64(10))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size <= 0 {
			return
		}
		offset, n, p := parseContentRange(header, size)
		if p != nil {
			if p.Status != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("problem %+v", p)
			}
			return
		}
		if offset < 0 || n <= 0 || offset+n > size || offset+n < offset {
			t.Fatalf("%q for size %d gave [%d, %d+%d)", header, size, offset, offset, n)
		}
	})
}
