package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test runs this test binary again as a child process that works on
// a store and prints each operation the store acknowledged; the parent kills
// it with SIGKILL and checks that the store kept every acknowledged operation.
const (
	crashDirEnv  = "STORE_CRASH_CHILD"
	crashSeedEnv = "STORE_CRASH_SEED"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		if err := crashChild(dir, seed); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const crashChunk = 8 << 10

// crashChild works on the store in dir until killed (or for 20 seconds),
// printing a line after each acknowledged operation:
//
//	blob OWNER HASH
//	upload OWNER ID I SIZE      (the upload's bytes are content(seed, I, SIZE))
//	chunk ID START END
//	commit ID HASH
//	job OWNER ID I STATE        (request "req I", result "res I")
func crashChild(dir string, seed uint64) error {
	d, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		owner := []string{"alice", "bob"}[i%2]

		data := content(seed, 2*i, 1+rng.IntN(64<<10))
		info, err := d.PutBlob(ctx, owner, bytes.NewReader(data), 1<<20)
		if err != nil {
			return err
		}
		say("blob %s %s", owner, info.Hash)

		size := 1 + rng.IntN(100<<10)
		data = content(seed, 2*i+1, size)
		u, err := d.CreateUpload(ctx, owner, int64(size), sum(data))
		if err != nil {
			return err
		}
		say("upload %s %s %d %d", owner, u.ID, 2*i+1, size)
		pieces := chunks(int64(size), crashChunk)
		rng.Shuffle(len(pieces), func(a, b int) { pieces[a], pieces[b] = pieces[b], pieces[a] })
		if len(pieces) > 1 {
			pieces = append(pieces, pieces[0]) // a retry
		}
		for _, c := range pieces {
			if _, err := d.WriteChunk(ctx, owner, u.ID, c.Start, c.End-c.Start, bytes.NewReader(data[c.Start:c.End])); err != nil {
				return err
			}
			say("chunk %s %d %d", u.ID, c.Start, c.End)
		}
		if rng.IntN(2) == 0 {
			info, err := d.CommitUpload(ctx, owner, u.ID, sum(data))
			if err != nil {
				return err
			}
			say("commit %s %s", u.ID, info.Hash)
		}

		j, _, err := d.CreateJob(ctx, NewJob{Owner: owner, IdempotencyKey: fmt.Sprint("k", seed, "-", i), Request: []byte(fmt.Sprint("req ", i))})
		if err != nil {
			return err
		}
		say("job %s %s %d %s", owner, j.ID, i, Queued)
		for _, to := range []State{Running, Done}[:rng.IntN(3)] {
			var result []byte
			if to == Done {
				result = []byte(fmt.Sprint("res ", i))
			}
			if _, err := d.Transition(ctx, j.ID, j.State, to, result); err != nil {
				return err
			}
			j.State = to
			say("job %s %s %d %s", owner, j.ID, i, to)
		}
	}
	return d.Close()
}

// What the parent knows was acknowledged.
type (
	ackUpload struct {
		owner     string
		seed      uint64
		i         int
		size      int64
		chunks    []Range
		committed bool
	}
	ackJob struct {
		owner string
		i     int
		seed  uint64
		state State
	}
	acked struct {
		blobs   map[[2]string]bool // owner, hash
		uploads map[string]*ackUpload
		jobs    map[string]*ackJob
	}
)

// runChild runs a child on dir, kills it a delay after it acknowledged stop
// operations, and records every line it printed in full.
func runChild(t *testing.T, dir string, seed uint64, stop int, delay time.Duration, a *acked) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	lines := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // a line without its newline was not acknowledged
		}
		lines++
		record(t, a, seed, strings.Fields(line))
		if lines == stop {
			time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v after %d lines, not by SIGKILL: %s", err, lines, stderr.Bytes())
	}
	return lines
}

func record(t *testing.T, a *acked, seed uint64, f []string) {
	t.Helper()
	atoi := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", f)
		}
		return n
	}
	switch {
	case f[0] == "blob" && len(f) == 3:
		a.blobs[[2]string{f[1], f[2]}] = true
	case f[0] == "upload" && len(f) == 5:
		a.uploads[f[2]] = &ackUpload{owner: f[1], seed: seed, i: int(atoi(f[3])), size: atoi(f[4])}
	case f[0] == "chunk" && len(f) == 4:
		u := a.uploads[f[1]]
		u.chunks = append(u.chunks, Range{atoi(f[2]), atoi(f[3])})
	case f[0] == "commit" && len(f) == 3:
		u := a.uploads[f[1]]
		u.committed = true
		a.blobs[[2]string{u.owner, f[2]}] = true
	case f[0] == "job" && len(f) == 5:
		a.jobs[f[2]] = &ackJob{owner: f[1], i: int(atoi(f[3])), seed: seed, state: State(f[4])}
	default:
		t.Fatalf("child printed %q", f)
	}
}

// TestCrashKill9 kills a child working on the store at seeded random points,
// several times on the same data directory, and checks after each kill that
// every acknowledged blob, chunk and job survived, that running jobs are
// queued again, that no temporary file is left, and that the store works.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(14, 9))
	a := &acked{blobs: map[[2]string]bool{}, uploads: map[string]*ackUpload{}, jobs: map[string]*ackJob{}}
	for round := range 8 {
		seed := uint64(100 + round)
		stop := 1 + rng.IntN(150)
		delay := time.Duration(rng.IntN(2000)) * time.Microsecond
		start := time.Now()
		lines := runChild(t, dir, seed, stop, delay, a)
		t.Logf("round %d: killed %v after acknowledged operation %d, %d printed, in %v", round, delay, stop, lines, time.Since(start).Round(time.Millisecond))
		checkAfterCrash(t, dir, a)
	}
}

func checkAfterCrash(t *testing.T, dir string, a *acked) {
	t.Helper()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("recovery: %+v", d.Recovered())
	if rec := d.Recovered(); rec.MissingBlobs != nil || rec.LostUploads != nil {
		t.Errorf("recovery lost records' files: %+v", rec)
	}
	// Before anything else: the store as the crash and recovery left it.
	checkConsistent(t, d)

	for k := range a.blobs {
		if got := readBlob(t, d, k[0], k[1]); sum(got) != k[1] {
			t.Errorf("blob %s of %s re-hashes to %s", k[1], k[0], sum(got))
		}
	}

	for id, au := range a.uploads {
		data := content(au.seed, au.i, int(au.size))
		if au.committed {
			continue // its blob is checked above
		}
		u, err := d.Upload(ctx, au.owner, id)
		if errors.Is(err, ErrNotFound) {
			// A commit that was not acknowledged may have happened.
			if _, err := d.StatBlob(ctx, au.owner, sum(data)); err != nil {
				t.Errorf("upload %s is gone and its blob is not stored: %v", id, err)
			}
			au.committed = true
			a.blobs[[2]string{au.owner, sum(data)}] = true
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		staging, err := os.ReadFile(d.stagingPath(id))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range au.chunks {
			covered := false
			for _, r := range u.Received {
				covered = covered || r.Start <= c.Start && c.End <= r.End
			}
			if !covered {
				t.Errorf("upload %s: acknowledged chunk %v is not among the received %v", id, c, u.Received)
			}
			if !bytes.Equal(staging[c.Start:c.End], data[c.Start:c.End]) {
				t.Errorf("upload %s: acknowledged chunk %v holds other bytes", id, c)
			}
		}
		// Resume: send every chunk again (the received ones must match)
		// and commit.
		putChunks(t, d, au.owner, id, data, chunks(au.size, crashChunk))
		if _, err := d.CommitUpload(ctx, au.owner, id, sum(data)); err != nil {
			t.Fatalf("resumed upload: %v", err)
		}
		au.committed = true
		a.blobs[[2]string{au.owner, sum(data)}] = true
	}

	if running, _ := d.ListJobs(ctx, JobFilter{State: Running}); len(running) != 0 {
		t.Errorf("%d jobs still running after recovery", len(running))
	}
	for id, aj := range a.jobs {
		j, err := d.Job(ctx, aj.owner, id)
		if err != nil {
			t.Errorf("acknowledged job: %v", err)
			continue
		}
		ok := false
		switch aj.state {
		case Queued, Running: // running jobs are queued again
			ok = j.State == Queued || j.State == Done
		case Done:
			ok = j.State == Done
		}
		if !ok {
			t.Errorf("job %s acknowledged %s is %s", id, aj.state, j.State)
		}
		if j.State == Done && string(j.Result) != fmt.Sprint("res ", aj.i) {
			t.Errorf("job %s has result %q", id, j.Result)
		}
		again, created, err := d.CreateJob(ctx, NewJob{Owner: aj.owner, IdempotencyKey: fmt.Sprint("k", aj.seed, "-", aj.i), Request: []byte(fmt.Sprint("req ", aj.i))})
		if err != nil || created || again.ID != id {
			t.Errorf("job %s by its idempotency key: %s, created %v, %v", id, again.ID, created, err)
		}
		// Run the queued ones: each completes once.
		if j.State == Queued {
			if _, err := d.Transition(ctx, id, Queued, Running, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Transition(ctx, id, Running, Done, []byte(fmt.Sprint("res ", aj.i))); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Transition(ctx, id, Running, Done, []byte("twice")); !errors.Is(err, ErrConflict) {
				t.Errorf("job %s completed twice: %v", id, err)
			}
			aj.state = Done
		}
	}

	// The store still works.
	info, err := d.PutBlob(ctx, "carol", strings.NewReader("after the crash"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteBlob(ctx, "carol", info.Hash); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, d)
	entries, _ := os.ReadDir(filepath.Join(dir, tmpDir))
	if len(entries) != 0 {
		t.Errorf("tmp/ holds %d files after recovery", len(entries))
	}
}
