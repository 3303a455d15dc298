package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/accelnode/accelnode/server/api"
)

// BenchmarkSealed sets what a session costs beside the same tiny job sent
// in the clear: the box on both sides, the receipt, and the nonce memory.
// The job echoes 64 KiB of input, so that sealing has bytes to work on.
func BenchmarkSealed(b *testing.B) {
	ts := startServer(b, serverOpts{})
	ts.validate = false
	module := ts.putModule(echoGuest)
	input := bytes.Repeat([]byte("digits"), 64<<10/6)
	req := api.JobRequest{Module: module, Stdin: input}
	plainBody, _ := json.Marshal(req)
	post := func(b *testing.B, path string, body []byte) {
		resp, err := http.Post(ts.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: status %d", path, resp.StatusCode)
		}
	}
	b.Run("invoke", func(b *testing.B) {
		for b.Loop() {
			post(b, "/v1/invoke", plainBody)
		}
	})
	b.Run("sealed-invoke", func(b *testing.B) {
		c := ts.openSession("")
		for b.Loop() {
			body, _ := json.Marshal(api.Sealed{Sealed: c.seal(req)})
			post(b, "/v1/sessions/"+c.id+"/invoke", body)
		}
	})
}

// BenchmarkActorCall sets a call of a resident actor (the counter's add:
// a tensor add and a little Go) with its snapshot stored after every call,
// the default, against stored only at eviction.
func BenchmarkActorCall(b *testing.B) {
	ts := startServer(b, serverOpts{})
	ts.validate = false
	module := ts.putReactor(counterActor)
	for _, snapshot := range []string{"every-call", "on-evict"} {
		b.Run(snapshot, func(b *testing.B) {
			a := ts.startActor(api.ActorRequest{Module: module, Snapshot: snapshot})
			payload := floats32(1, 2, 3, 4)
			for b.Loop() {
				if status, _ := ts.call(a.ID, "add", payload); status != http.StatusOK {
					b.Fatalf("status %d", status)
				}
			}
		})
	}
}
