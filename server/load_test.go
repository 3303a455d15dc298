package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

// The load test's size: small in make test, 64 clients for 60 s in make
// bench.
var (
	loadClients  = flag.Int("load.clients", 16, "TestLoad: concurrent clients")
	loadDuration = flag.Duration("load.duration", 4*time.Second, "TestLoad: how long the clients send")
)

// tinyModule is the smallest guest: it exports memory and a _start that
// returns at once, so that a job's cost is the node's own.
func tinyModule() []byte {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	exports := []byte{2}
	exports = append(append(exports, name("memory")...), 2, 0)
	exports = append(append(exports, name("_start")...), 0, 0)
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, 1, 0x60, 0, 0)...)  // one type: () -> ()
	m = append(m, section(3, 1, 0)...)           // one function of it
	m = append(m, section(5, 1, 0, 1)...)        // one memory of one page
	m = append(m, section(7, exports...)...)     // memory, _start
	m = append(m, section(10, 1, 2, 0, 0x0b)...) // its body: end
	return m
}

// rssAnon is the process's anonymous resident memory in bytes: the heap
// and stacks, without the pages of mapped files (the store's database)
// that the kernel may drop at will.
func rssAnon(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no RssAnon in /proc/self/status")
	return 0
}

// TestLoad runs clients that each invoke tiny jobs in a loop, over real
// loopback connections, for the load duration: no request fails other than
// with a 429, and the anonymous RSS after the first quarter (the warm-up)
// stays within 10 %. It logs p50, p99 and throughput.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test of seconds")
	}
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Workers = 4 * runtime.NumCPU() }})
	ts.validate = false
	var b api.Blob
	ts.do(http.MethodPut, "/v1/modules", tinyModule(), "Content-Type", "application/wasm").decode(t, &b)
	body, _ := json.Marshal(api.JobRequest{Module: b.SHA256})

	transport := &http.Transport{MaxIdleConnsPerHost: *loadClients, MaxConnsPerHost: *loadClients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		ok, busy  atomic.Int64
		failures  atomic.Int64
		firstFail atomic.Value
	)
	start := time.Now()
	end := start.Add(*loadDuration)
	warm := start.Add(*loadDuration / 4)
	// RSS is sampled after the warm-up; the peak of the first half of the
	// samples is compared with the peak of the second, so that a garbage
	// collection's swing in between does not count as growth.
	var samples []int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if now.After(warm) {
					samples = append(samples, rssAnon(t))
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for range *loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				resp, err := client.Post(ts.URL+"/v1/invoke", "application/json", bytes.NewReader(body))
				if err != nil {
					failures.Add(1)
					firstFail.CompareAndSwap(nil, err.Error())
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
					if t0.After(warm) {
						mine = append(mine, time.Since(t0))
					}
				case resp.StatusCode == http.StatusTooManyRequests:
					busy.Add(1)
					time.Sleep(10 * time.Millisecond)
				default:
					failures.Add(1)
					firstFail.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, data))
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(done)
	<-sampled
	took := time.Since(start)
	if n := failures.Load(); n > 0 {
		t.Errorf("%d requests failed; the first: %v", n, firstFail.Load())
	}
	if len(latencies) == 0 {
		t.Fatal("no request finished after the warm-up")
	}
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	if len(samples) < 4 {
		t.Fatalf("%d RSS samples", len(samples))
	}
	first, second := slices.Max(samples[:len(samples)/2]), slices.Max(samples[len(samples)/2:])
	t.Logf("%d clients for %v: %d jobs (%.0f/s), %d answered 429; latency p50 %v, p99 %v; anonymous RSS peaks %.1f MiB, then %.1f MiB",
		*loadClients, took.Round(time.Millisecond), ok.Load(), float64(ok.Load())/took.Seconds(), busy.Load(),
		q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), float64(first)/(1<<20), float64(second)/(1<<20))
	if float64(second) > 1.1*float64(first) {
		t.Errorf("anonymous RSS grew from a peak of %.1f MiB after the warm-up to %.1f MiB, more than 10 %%", float64(first)/(1<<20), float64(second)/(1<<20))
	}
}
