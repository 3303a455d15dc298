package server_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/models/onnx"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accelnode/accelnode/server/api"
)

// childDir, set in a re-run of the test binary, makes it a server on that
// data directory instead of the tests: TestCrashKill9 kills it with
// SIGKILL and starts another.
const childDir = "ACCELNODE_SERVER_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDir); dir != "" {
		serveChild(dir)
		return
	}
	os.Exit(m.Run())
}

// serveChild serves dir on a loopback port, prints the URL, and serves
// until killed.
func serveChild(dir string) {
	t := &childT{}
	ts := startServer(t, serverOpts{dir: dir, limits: nil})
	fmt.Println("listening", ts.URL)
	select {}
}

// childT lets startServer run outside a test: a failure ends the process.
type childT struct{ testing.TB }

func (c *childT) Helper()                   {}
func (c *childT) Cleanup(func())            {}
func (c *childT) TempDir() string           { d, _ := os.MkdirTemp("", "child"); return d }
func (c *childT) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (c *childT) Fatalf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...); os.Exit(2) }

// child is a server process on dir.
type child struct {
	cmd *exec.Cmd
	url string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDir+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if url, ok := strings.CutPrefix(lines.Text(), "listening "); ok {
				found <- url
			}
		}
	}()
	select {
	case url := <-found:
		c := &child{cmd: cmd, url: url}
		t.Cleanup(func() { c.kill() })
		return c
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the server process did not start in 60 s")
	}
	return nil
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// client is a testServer view of a child, for the request helpers.
func (c *child) client(t *testing.T, dir string) *testServer {
	return &testServer{URL: c.url, Dir: dir, t: t, validate: true}
}

// TestCrashKill9 kills a server with SIGKILL while jobs are queued and
// running and an upload is half done, then starts another on the same
// data directory: every accepted job completes once with the right output,
// the upload resumes from its offset, and every blob still hashes to its
// name.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	dir := t.TempDir()
	first := startChild(t, dir)
	ts := first.client(t, dir)
	long := ts.putModule(longGuest)
	digest := ts.putModule(digestGuest)

	// What digest prints, from a run before the crash.
	var want api.JobResult
	ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: digest}).decode(t, &want)

	var ids []string
	for i := range 8 {
		module := digest
		if i%4 == 0 {
			module = long
		}
		ids = append(ids, ts.submit(api.JobRequest{Module: module, Args: []string{fmt.Sprint(i)}}).ID)
	}
	model := modeltest.Unary("Relu", onnx.Float, modeltest.Batch4)
	var up api.Upload
	ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: int64(len(model)), SHA256: hash(model)}).decode(t, &up)
	half := len(model) / 2
	if r := ts.do(http.MethodPut, "/v1/uploads/"+up.ID, model[:half], "Content-Type", "application/octet-stream",
		"Content-Range", fmt.Sprintf("bytes 0-%d/%d", half-1, len(model))); r.Status != http.StatusOK {
		t.Fatalf("chunk: %d %s", r.Status, r.Body)
	}
	// Kill it while the first long job runs.
	for {
		var j api.Job
		ts.do(http.MethodGet, "/v1/jobs/"+ids[0], nil).decode(t, &j)
		if j.Status == api.Running {
			break
		}
		if j.Ended() {
			t.Fatalf("the long job ended before the kill: %+v", j)
		}
		time.Sleep(2 * time.Millisecond)
	}
	first.kill()
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(first.url, "http://"), time.Second); err == nil {
		conn.Close()
		t.Fatal("the killed server still answers")
	}

	second := startChild(t, dir)
	ts = second.client(t, dir)
	for i, id := range ids {
		j := ts.wait(id)
		if j.Status != api.Done || j.Result == nil || j.Result.ExitCode != 0 {
			t.Fatalf("job %d after the restart: %+v", i, j)
		}
		if i%4 == 0 {
			if got := string(j.Result.Stdout); got != "matmul returned: <nil>\n" {
				t.Errorf("long job %d printed %q", i, got)
			}
		} else if j.Result.StdoutSHA256 != want.StdoutSHA256 {
			t.Errorf("digest job %d printed %q, want %q", i, j.Result.Stdout, want.Stdout)
		}
	}
	var list struct{ Jobs []api.Job }
	ts.do(http.MethodGet, "/v1/jobs", nil).decode(t, &list)
	if len(list.Jobs) != len(ids)+1 {
		t.Errorf("%d jobs after the restart, want the %d accepted", len(list.Jobs), len(ids)+1)
	}
	// Each job's result was recorded once: a run cut short by the kill
	// left no trace but the job, still queued.
	for _, j := range list.Jobs {
		if j.Node.Attempts != 1 {
			t.Errorf("job %s has %d recorded runs, want 1", j.ID, j.Node.Attempts)
		}
	}

	// The upload resumes where it stopped.
	h := ts.do(http.MethodHead, "/v1/uploads/"+up.ID, nil)
	if h.Header.Get("Upload-Offset") != fmt.Sprint(half) {
		t.Fatalf("the upload resumes at %q, want %d", h.Header.Get("Upload-Offset"), half)
	}
	if r := ts.do(http.MethodPut, "/v1/uploads/"+up.ID, model[half:], "Content-Type", "application/octet-stream",
		"Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, len(model)-1, len(model))); r.Status != http.StatusOK {
		t.Fatalf("the rest: %d %s", r.Status, r.Body)
	}
	if r := ts.json(http.MethodPost, "/v1/uploads/"+up.ID+"/commit", api.Commit{Name: "relu", SHA256: hash(model)}); r.Status != http.StatusCreated {
		t.Fatalf("commit after the restart: %d %s", r.Status, r.Body)
	}
	second.kill()
	checkBlobs(t, filepath.Join(dir, "store", "blobs"))
}

// checkBlobs re-hashes every blob file under root against its name.
func checkBlobs(t *testing.T, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		name := filepath.Base(filepath.Dir(path)) + d.Name()
		if hex.EncodeToString(sum[:]) != name {
			t.Errorf("blob %s hashes to %x", path, sum)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no blobs found")
	}
}
