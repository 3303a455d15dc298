package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
)

// BenchmarkTinyJob is the round trip of the smallest job (tinyModule):
// node.Invoke called directly, then POST /v1/invoke over loopback HTTP from
// one client, through the store (the job recorded when accepted and when
// done, each synced to disk), and from parallel clients. Each reports its
// median as p50-ns beside the mean; the parallel one reports jobs/s.
func BenchmarkTinyJob(b *testing.B) {
	ts := startServer(b, serverOpts{})
	ts.validate = false
	wasm := tinyModule()
	var blob api.Blob
	ts.do(http.MethodPut, "/v1/modules", wasm, "Content-Type", "application/wasm").decode(b, &blob)
	body, _ := json.Marshal(api.JobRequest{Module: blob.SHA256})

	median := func(b *testing.B, times []time.Duration) {
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
	}
	b.Run("node.Invoke", func(b *testing.B) {
		n, err := node.Open(context.Background(), node.Config{Backend: "ref"})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		m, err := n.Compile(context.Background(), wasm)
		if err != nil {
			b.Fatal(err)
		}
		var times []time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := n.Invoke(context.Background(), m, node.Invocation{}); err != nil {
				b.Fatal(err)
			}
			times = append(times, time.Since(t0))
		}
		median(b, times)
	})
	invoke := func(b *testing.B, c *http.Client) {
		resp, err := c.Post(ts.URL+"/v1/invoke", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("http-invoke", func(b *testing.B) {
		var times []time.Duration
		for b.Loop() {
			t0 := time.Now()
			invoke(b, http.DefaultClient)
			times = append(times, time.Since(t0))
		}
		median(b, times)
	})
	b.Run("http-invoke-parallel", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.SetParallelism(8) // 16 clients on two cores
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				invoke(b, c)
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
}
