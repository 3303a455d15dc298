package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/server/servertest"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

// The guests the tests run.
const (
	echoGuest   = "github.com/accelnode/accelnode/engine/testdata/guests/echo"
	spinGuest   = "github.com/accelnode/accelnode/engine/testdata/guests/spin"
	digestGuest = "github.com/accelnode/accelnode/hostfn/testdata/guests/digest"
)

// serve starts a node on ref behind a real server on loopback, with its
// store in a temporary directory, as accelnode serve assembles them, and
// returns its URL.
func serve(t *testing.T, limits server.Limits) string {
	t.Helper()
	return servertest.Start(t, servertest.Options{Limits: limits}).URL
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putModule stores the guest pkg and returns its sha256.
func putModule(t *testing.T, c *client.Client, pkg string) string {
	t.Helper()
	wasm := guesttest.Build(t, pkg)
	b, err := c.PutModule(context.Background(), bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(wasm); b.SHA256 != hex.EncodeToString(sum[:]) || b.Size != int64(len(wasm)) {
		t.Fatalf("PutModule = %+v, want the module's sha256 and size %d", b, len(wasm))
	}
	return b.SHA256
}

// problem returns the *api.Problem that err wraps, failing t if none.
func problem(t *testing.T, err error, wantKind string) *api.Problem {
	t.Helper()
	var p *api.Problem
	if !errors.As(err, &p) {
		t.Fatalf("err = %v (%T), want one wrapping an *api.Problem of kind %s", err, err, wantKind)
	}
	if p.Kind() != wantKind {
		t.Fatalf("problem kind %q (%v), want %q", p.Kind(), err, wantKind)
	}
	return p
}

func TestJobs(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	info, err := c.Info(ctx)
	if err != nil || info.Backend != "ref" || info.Limits.MaxChunk == 0 || len(info.Backends) == 0 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	digest := putModule(t, c, digestGuest)
	echo := putModule(t, c, echoGuest)
	mods, err := c.Modules(ctx)
	if err != nil || len(mods) != 2 {
		t.Fatalf("Modules = %v, %v", mods, err)
	}
	if b, err := c.Module(ctx, echo); err != nil || b.Size != int64(len(guesttest.Build(t, echoGuest))) {
		t.Fatalf("Module = %+v, %v", b, err)
	}

	// Submit, submit again with the same key, long-poll, fetch the result.
	job, err := c.Submit(ctx, api.JobRequest{Module: digest}, "digest-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(ctx, api.JobRequest{Module: digest}, "digest-1")
	if err != nil || again.ID != job.ID {
		t.Fatalf("the same idempotency key gave job %q (%v), not %q", again.ID, err, job.ID)
	}
	done, err := c.Wait(ctx, job.ID)
	if err != nil || done.Status != api.Done || done.Result == nil {
		t.Fatalf("Wait = %+v, %v", done, err)
	}
	res, err := c.Result(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "exited" || res.ExitCode != 0 || !bytes.Contains(res.Stdout, []byte("\nall ")) || res.Mode != "strict" {
		t.Fatalf("Result = %+v\nstdout:\n%s\nstderr:\n%s", res, res.Stdout, res.Stderr)
	}
	if !bytes.Equal(res.Stdout, done.Result.Stdout) || res.ModuleSHA256 != digest {
		t.Errorf("Result and Wait disagree: %+v, %+v", res, *done.Result)
	}
	if j, err := c.Job(ctx, job.ID, 0); err != nil || j.Status != api.Done || j.Node.Backend != "ref" {
		t.Errorf("Job = %+v, %v", j, err)
	}
	_, err = c.Cancel(ctx, job.ID)
	problem(t, err, "conflict")
	if other, err := c.Submit(ctx, api.JobRequest{Module: echo}, "digest-2"); err != nil || other.ID == job.ID {
		t.Errorf("another key gave job %q (%v), the first's", other.ID, err)
	} else if _, err := c.Wait(ctx, other.ID); err != nil {
		t.Error(err)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil || !slices.ContainsFunc(jobs, func(j api.Job) bool { return j.ID == job.ID }) {
		t.Errorf("Jobs = %v, %v; want it to hold %s", jobs, err, job.ID)
	}

	// Invoke, with stdin inline and from a blob.
	in := []byte("hello, node\n")
	r, err := c.Invoke(ctx, api.JobRequest{Module: echo, Args: []string{"a1"}, Stdin: in}, "")
	if err != nil || !bytes.Equal(r.Stdout, in) || !bytes.Contains(r.Stderr, []byte("arg1=a1")) {
		t.Fatalf("Invoke = %+v, %v", r, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB: past the inline bound
	blob, err := c.PutBlob(ctx, bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	r, err = c.Invoke(ctx, api.JobRequest{Module: echo, StdinBlob: blob.SHA256}, "")
	if err != nil || r.StdoutBlob == "" || len(r.Stdout) != 0 {
		t.Fatalf("Invoke = %+v, %v; want its stdout in a blob", r.StdoutBlob, err)
	}
	rc, err := c.Blob(ctx, r.StdoutBlob)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(out, big) {
		t.Fatalf("the stdout blob has %d bytes (%v), want the %d of stdin", len(out), err, len(big))
	}
	blobs, err := c.Blobs(ctx)
	if err != nil || !slices.ContainsFunc(blobs, func(b api.Blob) bool { return b.SHA256 == blob.SHA256 }) {
		t.Fatalf("Blobs = %v, %v", blobs, err)
	}
	if err := c.DeleteModule(ctx, digest); err != nil {
		t.Fatal(err)
	}
	_, err = c.Module(ctx, digest)
	problem(t, err, "not-found")
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{Workers: 1}))
	spin := putModule(t, c, spinGuest)
	running, err := c.Submit(ctx, api.JobRequest{Module: spin}, "")
	if err != nil {
		t.Fatal(err)
	}
	queued, err := c.Submit(ctx, api.JobRequest{Module: spin}, "")
	if err != nil {
		t.Fatal(err)
	}
	// The one worker takes the first job; the second waits behind it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		j, err := c.Job(ctx, running.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == api.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still %s", j.ID, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Result(ctx, running.ID); !errors.Is(err, client.ErrPending) {
		t.Fatalf("the result of a running job: %v, want ErrPending", err)
	}
	for _, id := range []string{queued.ID, running.ID} {
		j, err := c.Cancel(ctx, id)
		if err != nil || j.Status != api.Cancelled {
			t.Fatalf("Cancel(%s) = %+v, %v", id, j, err)
		}
		if j, err = c.Wait(ctx, id); err != nil || j.Status != api.Cancelled {
			t.Fatalf("Wait(%s) = %+v, %v", id, j, err)
		}
		_, err = c.Result(ctx, id)
		problem(t, err, "conflict")
	}
	// Cancelling again is no error; cancelling a job that ended is.
	if j, err := c.Cancel(ctx, running.ID); err != nil || j.Status != api.Cancelled {
		t.Fatalf("Cancel again = %+v, %v", j, err)
	}
}

// TestQueueFull checks that a full queue answers 429 with Retry-After, and
// that a submit with an idempotency key waits as it asks and tries again.
func TestQueueFull(t *testing.T) {
	ctx := context.Background()
	var keyed atomic.Int64 // submits with an idempotency key
	count := roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("Idempotency-Key") != "" {
			keyed.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	c := newClient(t, serve(t, server.Limits{Workers: 1, Queue: 1}),
		client.WithMaxDelay(300*time.Millisecond), client.WithHTTPClient(&http.Client{Transport: count}))
	spin := putModule(t, c, spinGuest)
	first, err := c.Submit(ctx, api.JobRequest{Module: spin}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Once the worker runs the first, the second fills the queue.
	var second api.Job
	for deadline := time.Now().Add(10 * time.Second); ; {
		if second, err = c.Submit(ctx, api.JobRequest{Module: spin}, ""); err == nil {
			break
		}
		problem(t, err, "queue-full")
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = c.Submit(ctx, api.JobRequest{Module: spin}, "")
	p := problem(t, err, "queue-full")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.RetryAfter != time.Second || p.Status != http.StatusTooManyRequests || ce.Method != "POST" {
		t.Fatalf("err = %#v, want a 429 with Retry-After: 1", err)
	}
	// Cancelling the running job frees the worker, which takes the second
	// and so frees the queue while the keyed submit waits to retry.
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.Cancel(ctx, first.ID)
	}()
	third, err := c.Submit(ctx, api.JobRequest{Module: spin}, "retried")
	if err != nil {
		t.Fatalf("a keyed submit was not retried through: %v", err)
	}
	if n := keyed.Load(); n < 2 {
		t.Errorf("the keyed submit was sent %d times, want a retry", n)
	}
	for _, id := range []string{second.ID, third.ID} {
		if _, err := c.Cancel(ctx, id); err != nil {
			t.Error(err)
		}
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestUploadChunks sends a model in chunks out of order, one of them twice
// and one changed, through the low-level calls.
func TestUploadChunks(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	data := modeltest.Linear(1)
	const chunk = 32 << 10
	u, err := c.CreateUpload(ctx, int64(len(data)), hash(data))
	if err != nil {
		t.Fatal(err)
	}
	var offsets []int64
	for off := int64(0); off < int64(len(data)); off += chunk {
		offsets = append(offsets, off)
	}
	if len(offsets) < 4 {
		t.Fatalf("the model has %d bytes, %d chunks; want at least 4", len(data), len(offsets))
	}
	piece := func(off int64) []byte { return data[off:min(off+chunk, int64(len(data)))] }
	// Last first, then the rest from the second on, the third twice.
	order := append([]int64{offsets[len(offsets)-1]}, offsets[1:len(offsets)-1]...)
	order = append(order, offsets[2])
	for i, off := range order {
		got, err := c.PutChunk(ctx, u.ID, off, piece(off))
		if err != nil {
			t.Fatalf("chunk %d at %d: %v", i, off, err)
		}
		if got.Offset != 0 || got.Complete {
			t.Fatalf("without the first chunk the upload is at %d (complete %v)", got.Offset, got.Complete)
		}
	}
	changed := bytes.Clone(piece(offsets[1]))
	changed[0] ^= 0xff
	_, err = c.PutChunk(ctx, u.ID, offsets[1], changed)
	problem(t, err, "conflict")
	_, err = c.Commit(ctx, u.ID, "linear", hash(data))
	problem(t, err, "range")

	st, err := c.UploadStatus(ctx, u.ID)
	if err != nil || st.Size != int64(len(data)) || len(st.Received) != 1 || st.Received[0] != (api.Range{Start: chunk, End: int64(len(data))}) {
		t.Fatalf("UploadStatus = %+v, %v", st, err)
	}
	if got, err := c.PutChunk(ctx, u.ID, 0, piece(0)); err != nil || !got.Complete || got.Offset != int64(len(data)) {
		t.Fatalf("after the first chunk: %+v, %v", got, err)
	}
	_, err = c.Commit(ctx, u.ID, "linear", hash(modeltest.Linear(2)))
	problem(t, err, "hash-mismatch")

	// The mismatch discarded the upload: send it again, whole, and commit.
	m, err := c.Upload(ctx, "linear", bytes.NewReader(data), int64(len(data)), &client.UploadOptions{ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "linear" || m.SHA256 != hash(data) || len(m.Inputs) != 1 || m.Inputs[0].Shape[1] != 128 || m.Inputs[0].Dims[0] != "batch" {
		t.Fatalf("Upload = %+v", m)
	}
	list, err := c.Models(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "linear" {
		t.Fatalf("Models = %+v, %v", list, err)
	}
	if got, err := c.Model(ctx, "linear"); err != nil || got.Outputs[0].Shape[1] != 256 {
		t.Fatalf("Model = %+v, %v", got, err)
	}
	_, err = c.Model(ctx, "nonesuch")
	problem(t, err, "not-found")
	// The bytes of a registered model stay.
	err = c.DeleteBlob(ctx, hash(data))
	problem(t, err, "conflict")

	u, err = c.CreateUpload(ctx, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AbortUpload(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.UploadStatus(ctx, u.ID)
	problem(t, err, "not-found")
}

// flaky is a transport that fails chosen requests once each, before they
// reach the server, and counts the chunks it passes.
type flaky struct {
	mu     sync.Mutex
	fail   map[string]int // "METHOD Content-Range" → failures left
	chunks atomic.Int64
}

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	key := r.Method + " " + r.Header.Get("Content-Range")
	f.mu.Lock()
	n := f.fail[key]
	if n > 0 {
		f.fail[key] = n - 1
	}
	f.mu.Unlock()
	if n > 0 {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("connection reset by the test")
	}
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/uploads/") {
		f.chunks.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestUploadResume has Upload finish an upload half done, sending only the
// chunks the node lacks, one of which fails once on the way.
func TestUploadResume(t *testing.T) {
	ctx := context.Background()
	url := serve(t, server.Limits{})
	data := modeltest.Linear(3)
	size := int64(len(data))
	const chunk = 16 << 10
	tr := &flaky{fail: map[string]int{}}
	c := newClient(t, url, client.WithHTTPClient(&http.Client{Transport: tr}))
	u, err := c.CreateUpload(ctx, size, "")
	if err != nil {
		t.Fatal(err)
	}
	half := (size / 2 / chunk) * chunk
	for off := int64(0); off < half; off += chunk {
		if _, err := c.PutChunk(ctx, u.ID, off, data[off:off+chunk]); err != nil {
			t.Fatal(err)
		}
	}
	tr.chunks.Store(0)
	tr.failChunk(half+chunk, half+2*chunk, 1)

	var calls [][2]int64
	var started string
	m, err := c.Upload(ctx, "resumed", bytes.NewReader(data), size, &client.UploadOptions{
		ChunkSize: chunk,
		Resume:    u.ID,
		Progress:  func(sent, total int64) { calls = append(calls, [2]int64{sent, total}) },
		Started:   func(id string) { started = id },
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != hash(data) || started != u.ID {
		t.Fatalf("Upload = %+v, started %q", m, started)
	}
	wantChunks := (size - half + chunk - 1) / chunk
	if got := tr.chunks.Load(); got != wantChunks {
		t.Errorf("Upload sent %d chunks, want the %d missing", got, wantChunks)
	}
	if len(calls) != int(wantChunks)+1 || calls[0] != [2]int64{half, size} || calls[len(calls)-1] != [2]int64{size, size} {
		t.Errorf("progress calls %v; want %d from %d to %d", calls, wantChunks+1, half, size)
	}
	if list, err := c.Models(ctx); err != nil || len(list) != 1 || list[0].Name != "resumed" {
		t.Errorf("Models = %+v, %v", list, err)
	}

	// A chunk that keeps failing ends Upload with an error naming the
	// upload, which a second Upload resumes.
	data = modeltest.Linear(4)
	tr.failChunk(0, chunk, 10)
	_, err = c.Upload(ctx, "second", bytes.NewReader(data), size, &client.UploadOptions{ChunkSize: chunk, Retries: -1})
	var ue *client.UploadError
	if !errors.As(err, &ue) || ue.ID == "" {
		t.Fatalf("err = %v, want an *UploadError", err)
	}
	tr.reset()
	if _, err := c.Upload(ctx, "second", bytes.NewReader(data), size, &client.UploadOptions{ChunkSize: chunk, Resume: ue.ID}); err != nil {
		t.Fatal(err)
	}
}

// failChunk has the chunk of [start, end) fail times, before it reaches
// the server.
func (f *flaky) failChunk(start, end int64, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[fmt.Sprintf("PUT bytes %d-%d/*", start, end-1)] = times
}

func (f *flaky) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.fail)
}

func TestProblems(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	_, err := c.PutModule(ctx, strings.NewReader("not webassembly"))
	p := problem(t, err, "invalid-module")
	if p.Status != http.StatusUnprocessableEntity || p.Instance != "/v1/modules" || p.Detail == "" {
		t.Errorf("problem = %+v", p)
	}
	if !strings.Contains(err.Error(), "PUT /v1/modules") {
		t.Errorf("the error %q does not name the call", err)
	}
	_, err = c.Job(ctx, "nonesuch", 0)
	problem(t, err, "not-found")
	_, err = c.Submit(ctx, api.JobRequest{Module: "nope"}, "")
	problem(t, err, "bad-request")
	echo := putModule(t, c, echoGuest)
	_, err = c.Submit(ctx, api.JobRequest{Module: echo, Backend: "nonesuch"}, "")
	problem(t, err, "invalid-job")
	_, err = c.Invoke(ctx, api.JobRequest{Module: echo, Timeout: "soon"}, "")
	problem(t, err, "bad-request")
	_, err = c.CreateUpload(ctx, 0, "")
	problem(t, err, "bad-request")

	// An answer that is not problem+json keeps its status.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer ts.Close()
	_, err = newClient(t, ts.URL).Models(ctx)
	var pp *api.Problem
	if !errors.As(err, &pp) || pp.Status != http.StatusBadGateway || pp.Detail != "upstream down" {
		t.Errorf("err = %v", err)
	}
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://host", "http://"} {
		if _, err := client.New(bad); err == nil {
			t.Errorf("New(%q) took it", bad)
		}
	}
}

func TestMissing(t *testing.T) {
	r := func(bounds ...int64) []api.Range {
		var out []api.Range
		for i := 0; i < len(bounds); i += 2 {
			out = append(out, api.Range{Start: bounds[i], End: bounds[i+1]})
		}
		return out
	}
	tests := []struct {
		received []api.Range
		size     int64
		want     []api.Range
	}{
		{nil, 10, r(0, 10)},
		{r(0, 10), 10, nil},
		{r(6, 8, 2, 4), 10, r(0, 2, 4, 6, 8, 10)},
		{r(0, 3, 2, 5), 6, r(5, 6)},
	}
	for _, tc := range tests {
		if got := client.Missing(tc.received, tc.size); !slices.Equal(got, tc.want) {
			t.Errorf("Missing(%v, %d) = %v, want %v", tc.received, tc.size, got, tc.want)
		}
	}
}
