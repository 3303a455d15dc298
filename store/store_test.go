package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBlobRoundTrip(t *testing.T) {
	d := open(t, t.TempDir())
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello, node")},
		{"larger than a copy buffer", content(1, 0, 300_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := d.PutBlob(ctx, "alice", bytes.NewReader(tt.data), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if info.Hash != sum(tt.data) || info.Size != int64(len(tt.data)) {
				t.Fatalf("put: %+v, want hash %s size %d", info, sum(tt.data), len(tt.data))
			}
			if got := readBlob(t, d, "alice", info.Hash); !bytes.Equal(got, tt.data) {
				t.Fatal("read back different bytes")
			}
			st, err := d.StatBlob(ctx, "alice", info.Hash)
			if err != nil || st != info {
				t.Fatalf("stat: %+v, %v; want %+v", st, err, info)
			}
			// Putting it again changes nothing.
			again, err := d.PutBlob(ctx, "alice", bytes.NewReader(tt.data), 1<<20)
			if err != nil || again != info {
				t.Fatalf("put again: %+v, %v; want %+v", again, err, info)
			}
		})
	}
	list, err := d.ListBlobs(ctx, "alice")
	if err != nil || len(list) != len(tests) {
		t.Fatalf("list: %d blobs, %v", len(list), err)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1].Hash >= list[i].Hash {
			t.Errorf("list is not sorted by hash")
		}
	}
	for _, b := range list {
		if err := d.DeleteBlob(ctx, "alice", b.Hash); err != nil {
			t.Fatal(err)
		}
		if _, err := d.StatBlob(ctx, "alice", b.Hash); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat after delete: %v, want ErrNotFound", err)
		}
		if _, err := os.Stat(d.blobPath(b.Hash)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("file of a deleted blob: %v", err)
		}
	}
	if err := d.DeleteBlob(ctx, "alice", list[0].Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	checkConsistent(t, d)
}

func TestBlobSharedAndIsolated(t *testing.T) {
	d := open(t, t.TempDir())
	shared := []byte("a model both keys uploaded")
	mine := []byte("alice's module")
	a, err := d.PutBlob(ctx, "alice", bytes.NewReader(shared), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutBlob(ctx, "bob", bytes.NewReader(shared), 100); err != nil {
		t.Fatal(err)
	}
	own, err := d.PutBlob(ctx, "alice", bytes.NewReader(mine), 100)
	if err != nil {
		t.Fatal(err)
	}
	// bob sees only what he put.
	if _, _, err := d.OpenBlob(ctx, "bob", own.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob opens alice's blob: %v, want ErrNotFound", err)
	}
	if _, err := d.StatBlob(ctx, "bob", own.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob stats alice's blob: %v, want ErrNotFound", err)
	}
	if err := d.DeleteBlob(ctx, "bob", own.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob deletes alice's blob: %v, want ErrNotFound", err)
	}
	if list, _ := d.ListBlobs(ctx, "bob"); len(list) != 1 || list[0].Hash != a.Hash {
		t.Errorf("bob lists %v", list)
	}
	// alice deleting the shared blob leaves bob's.
	if err := d.DeleteBlob(ctx, "alice", a.Hash); err != nil {
		t.Fatal(err)
	}
	if got := readBlob(t, d, "bob", a.Hash); !bytes.Equal(got, shared) {
		t.Error("bob's copy of the shared blob changed")
	}
	if _, err := d.StatBlob(ctx, "alice", a.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("alice stats the blob she deleted: %v", err)
	}
	checkConsistent(t, d)
	// Opened blobs stay readable when deleted.
	f, _, err := d.OpenBlob(ctx, "bob", a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.DeleteBlob(ctx, "bob", a.Hash); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, shared) {
		t.Errorf("reading a blob deleted while open: %v", err)
	}
	checkConsistent(t, d)
}

func TestBlobRefusals(t *testing.T) {
	d := open(t, t.TempDir())
	tests := []struct {
		name  string
		owner string
		data  string
		max   int64
		want  error
	}{
		{"at the limit", "alice", "12345", 5, nil},
		{"one over", "alice", "123456", 5, ErrTooLarge},
		{"far over", "alice", strings.Repeat("x", 1<<20), 1000, ErrTooLarge},
		{"no limit", "alice", "12345", math.MaxInt64, nil},
		{"negative limit", "alice", "x", -1, ErrInvalid},
		{"no owner", "", "x", 5, ErrInvalid},
		{"owner with NUL", "a\x00b", "x", 5, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.PutBlob(ctx, tt.owner, strings.NewReader(tt.data), tt.max)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	for _, hash := range []string{"", "abc", strings.Repeat("A", 64), "../" + strings.Repeat("a", 61)} {
		if _, err := d.StatBlob(ctx, "alice", hash); !errors.Is(err, ErrInvalid) {
			t.Errorf("stat %q: %v, want ErrInvalid", hash, err)
		}
	}
	// A reader that fails stores nothing.
	_, err := d.PutBlob(ctx, "alice", io.MultiReader(strings.NewReader("part"), errReader{}), 100)
	if err == nil {
		t.Error("a failing reader was stored")
	}
	if u, _ := d.Usage(ctx, "alice"); u.Blobs != 1 || u.BlobBytes != 5 {
		t.Errorf("usage after refusals: %+v, want the one blob of 5 bytes", u)
	}
	checkConsistent(t, d)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// chunks splits n bytes into pieces of size.
func chunks(n, size int64) []Range {
	var out []Range
	for s := int64(0); s < n; s += size {
		out = append(out, Range{s, min(s+size, n)})
	}
	return out
}

func TestUploadRoundTrip(t *testing.T) {
	data := content(2, 0, 100_000)
	n := int64(len(data))
	in := chunks(n, 16_384)
	reversed := make([]Range, len(in))
	for i, c := range in {
		reversed[len(in)-1-i] = c
	}
	tests := []struct {
		name   string
		chunks []Range
	}{
		{"in order", in},
		{"reversed", reversed},
		{"shuffled", []Range{in[3], in[0], in[6], in[1], in[5], in[2], in[4]}},
		{"retried", append(append([]Range{}, in[:3]...), append([]Range{in[1], in[2]}, in[3:]...)...)},
		{"overlapping", []Range{{0, 50_000}, {40_000, 70_000}, {10_000, 20_000}, {60_000, n}}},
		{"one byte and the rest", []Range{{n - 1, n}, {0, n - 1}}},
		{"covered twice whole", []Range{{0, n}, {0, n}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, t.TempDir())
			u, err := d.CreateUpload(ctx, "alice", n, sum(data))
			if err != nil {
				t.Fatal(err)
			}
			if u.Offset != 0 || u.Complete() {
				t.Fatalf("new upload: %+v", u)
			}
			u = putChunks(t, d, "alice", u.ID, data, tt.chunks)
			if !u.Complete() || len(u.Received) != 1 {
				t.Fatalf("after every chunk: offset %d, received %v", u.Offset, u.Received)
			}
			if us, _ := d.Usage(ctx, "alice"); us.Uploads != 1 || us.UploadBytes != n {
				t.Errorf("usage during the upload: %+v", us)
			}
			info, err := d.CommitUpload(ctx, "alice", u.ID, sum(data))
			if err != nil {
				t.Fatal(err)
			}
			if info.Hash != sum(data) || info.Size != n {
				t.Fatalf("commit: %+v", info)
			}
			if !bytes.Equal(readBlob(t, d, "alice", info.Hash), data) {
				t.Fatal("committed blob differs")
			}
			if _, err := d.Upload(ctx, "alice", u.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("upload after commit: %v, want ErrNotFound", err)
			}
			if us, _ := d.Usage(ctx, "alice"); us != (Usage{Blobs: 1, BlobBytes: n}) {
				t.Errorf("usage after commit: %+v", us)
			}
			checkConsistent(t, d)
		})
	}
}

func TestUploadOffset(t *testing.T) {
	d := open(t, t.TempDir())
	data := content(3, 0, 1000)
	u, err := d.CreateUpload(ctx, "alice", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		chunk  Range
		offset int64
		ranges []Range
	}{
		{Range{500, 600}, 0, []Range{{500, 600}}},
		{Range{0, 100}, 100, []Range{{0, 100}, {500, 600}}},
		{Range{200, 300}, 100, []Range{{0, 100}, {200, 300}, {500, 600}}},
		{Range{100, 200}, 300, []Range{{0, 300}, {500, 600}}},
		{Range{300, 500}, 600, []Range{{0, 600}}},
		{Range{600, 1000}, 1000, []Range{{0, 1000}}},
	}
	for _, s := range steps {
		u = putChunks(t, d, "alice", u.ID, data, []Range{s.chunk})
		got, err := d.Upload(ctx, "alice", u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Offset != s.offset || fmt.Sprint(got.Received) != fmt.Sprint(s.ranges) {
			t.Errorf("after %v: offset %d, received %v; want %d, %v", s.chunk, got.Offset, got.Received, s.offset, s.ranges)
		}
	}
	if _, err := d.CommitUpload(ctx, "alice", u.ID, ""); err != nil {
		t.Fatal(err)
	}
}

func TestUploadRefusals(t *testing.T) {
	data := content(4, 0, 1000)
	other := append([]byte{}, data...)
	other[150] ^= 1
	tests := []struct {
		name string
		run  func(d *Disk, id string) error
		want error
	}{
		{"chunk past the end", func(d *Disk, id string) error {
			_, err := d.WriteChunk(ctx, "alice", id, 900, 101, bytes.NewReader(make([]byte, 101)))
			return err
		}, ErrRange},
		{"chunk at a negative offset", func(d *Disk, id string) error {
			_, err := d.WriteChunk(ctx, "alice", id, -1, 10, bytes.NewReader(make([]byte, 10)))
			return err
		}, ErrRange},
		{"chunk starting past the end", func(d *Disk, id string) error {
			_, err := d.WriteChunk(ctx, "alice", id, 1001, 0, bytes.NewReader(nil))
			return err
		}, ErrRange},
		{"chunk shorter than it said", func(d *Disk, id string) error {
			_, err := d.WriteChunk(ctx, "alice", id, 0, 100, bytes.NewReader(data[:50]))
			return err
		}, io.ErrUnexpectedEOF},
		{"overlap that differs", func(d *Disk, id string) error {
			putChunks(t, d, "alice", id, data, []Range{{100, 200}})
			_, err := d.WriteChunk(ctx, "alice", id, 0, 300, bytes.NewReader(other[:300]))
			return err
		}, ErrConflict},
		{"commit before the end", func(d *Disk, id string) error {
			putChunks(t, d, "alice", id, data, []Range{{0, 999}})
			_, err := d.CommitUpload(ctx, "alice", id, sum(data))
			return err
		}, ErrRange},
		{"another key's upload", func(d *Disk, id string) error {
			_, err := d.WriteChunk(ctx, "bob", id, 0, 10, bytes.NewReader(data[:10]))
			if errors.Is(err, ErrNotFound) {
				_, err = d.Upload(ctx, "bob", id)
			}
			if errors.Is(err, ErrNotFound) {
				_, err = d.CommitUpload(ctx, "bob", id, "")
			}
			if errors.Is(err, ErrNotFound) {
				err = d.AbortUpload(ctx, "bob", id)
			}
			return err
		}, ErrNotFound},
		{"unknown upload", func(d *Disk, id string) error {
			_, err := d.Upload(ctx, "alice", strings.Repeat("0", 32))
			return err
		}, ErrNotFound},
		{"upload id that names another file", func(d *Disk, id string) error {
			_, err := d.Upload(ctx, "alice", "../store.db")
			return err
		}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, t.TempDir())
			u, err := d.CreateUpload(ctx, "alice", 1000, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.run(d, u.ID); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			// The upload is still usable and ends with the right bytes.
			putChunks(t, d, "alice", u.ID, data, []Range{{0, 1000}})
			if info, err := d.CommitUpload(ctx, "alice", u.ID, sum(data)); err != nil || info.Hash != sum(data) {
				t.Fatalf("commit after the refusal: %+v, %v", info, err)
			}
			checkConsistent(t, d)
		})
	}
}

func TestUploadWrongHash(t *testing.T) {
	data := content(5, 0, 5000)
	wrong := sum([]byte("something else"))
	tests := []struct {
		name               string
		atCreate, atCommit string
	}{
		{"at commit", "", wrong},
		{"at create", wrong, ""},
		{"at create, right at commit", wrong, sum(data)},
		{"right at create, wrong at commit", sum(data), wrong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, t.TempDir())
			u, err := d.CreateUpload(ctx, "alice", int64(len(data)), tt.atCreate)
			if err != nil {
				t.Fatal(err)
			}
			putChunks(t, d, "alice", u.ID, data, chunks(int64(len(data)), 1024))
			_, err = d.CommitUpload(ctx, "alice", u.ID, tt.atCommit)
			if !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("commit: %v, want ErrHashMismatch", err)
			}
			// The upload failed cleanly: nothing stored, nothing left.
			if _, err := d.Upload(ctx, "alice", u.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("upload after a mismatch: %v, want ErrNotFound", err)
			}
			if _, err := d.StatBlob(ctx, "alice", sum(data)); !errors.Is(err, ErrNotFound) {
				t.Errorf("blob after a mismatch: %v, want ErrNotFound", err)
			}
			if us, _ := d.Usage(ctx, "alice"); us != (Usage{}) {
				t.Errorf("usage after a mismatch: %+v", us)
			}
			checkConsistent(t, d)
		})
	}
}

func TestUploadAbort(t *testing.T) {
	d := open(t, t.TempDir())
	u, err := d.CreateUpload(ctx, "alice", 100, "")
	if err != nil {
		t.Fatal(err)
	}
	putChunks(t, d, "alice", u.ID, content(6, 0, 100), []Range{{0, 40}})
	if err := d.AbortUpload(ctx, "alice", u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteChunk(ctx, "alice", u.ID, 40, 1, strings.NewReader("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("chunk after abort: %v, want ErrNotFound", err)
	}
	if us, _ := d.Usage(ctx, "alice"); us != (Usage{}) {
		t.Errorf("usage after abort: %+v", us)
	}
	checkConsistent(t, d)
}

// TestUploadResumes closes the store halfway through an upload and finishes it
// after opening the store again.
func TestUploadResumes(t *testing.T) {
	dir := t.TempDir()
	data := content(7, 0, 70_000)
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.CreateUpload(ctx, "alice", int64(len(data)), sum(data))
	if err != nil {
		t.Fatal(err)
	}
	putChunks(t, d, "alice", u.ID, data, []Range{{0, 30_000}, {50_000, 60_000}})
	d.Close()

	d = open(t, dir)
	u, err = d.Upload(ctx, "alice", u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Offset != 30_000 {
		t.Fatalf("resumed at %d, want 30000", u.Offset)
	}
	putChunks(t, d, "alice", u.ID, data, []Range{{u.Offset, int64(len(data))}})
	if _, err := d.CommitUpload(ctx, "alice", u.ID, ""); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, d)
}

func TestJobs(t *testing.T) {
	d := open(t, t.TempDir())
	a1, created, err := d.CreateJob(ctx, NewJob{Owner: "alice", IdempotencyKey: "k1", Request: []byte(`{"n":1}`)})
	if err != nil || !created || a1.State != Queued {
		t.Fatalf("create: %+v, %v, %v", a1, created, err)
	}
	// The same key and request give the same job; another request under the
	// key is a conflict; another owner's key is its own.
	again, created, err := d.CreateJob(ctx, NewJob{Owner: "alice", IdempotencyKey: "k1", Request: []byte(`{"n":1}`)})
	if err != nil || created || again.ID != a1.ID {
		t.Fatalf("create again: %+v, %v, %v", again, created, err)
	}
	if _, _, err := d.CreateJob(ctx, NewJob{Owner: "alice", IdempotencyKey: "k1", Request: []byte(`{"n":2}`)}); !errors.Is(err, ErrConflict) {
		t.Errorf("key reused for another request: %v, want ErrConflict", err)
	}
	b1, created, err := d.CreateJob(ctx, NewJob{Owner: "bob", IdempotencyKey: "k1", Request: []byte(`{"n":1}`)})
	if err != nil || !created || b1.ID == a1.ID {
		t.Fatalf("bob's job under alice's key: %+v, %v, %v", b1, created, err)
	}
	for _, tc := range []struct {
		owner, key, want string
		err              error
	}{{"alice", "k1", a1.ID, nil}, {"bob", "k1", b1.ID, nil}, {"alice", "k2", "", ErrNotFound}, {"carol", "k1", "", ErrNotFound}} {
		if j, err := d.JobByKey(ctx, tc.owner, tc.key); j.ID != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("JobByKey(%s, %s): %s, %v; want %s, %v", tc.owner, tc.key, j.ID, err, tc.want, tc.err)
		}
	}
	a2, _, _ := d.CreateJob(ctx, NewJob{Owner: "alice", Request: []byte(`{"n":2}`)})
	a3, _, _ := d.CreateJob(ctx, NewJob{Owner: "alice", Request: []byte(`{"n":3}`)})

	// bob cannot see alice's jobs.
	if _, err := d.Job(ctx, "bob", a1.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob reads alice's job: %v, want ErrNotFound", err)
	}
	if us, _ := d.Usage(ctx, "alice"); us.Queued != 3 || us.Running != 0 {
		t.Errorf("alice's usage: %+v", us)
	}

	// Compare-and-set moves.
	steps := []struct {
		id       string
		from, to State
		result   string
		want     error
	}{
		{a1.ID, Queued, Running, "", nil},
		{a1.ID, Queued, Running, "", ErrConflict}, // started twice
		{a1.ID, Running, Done, "out-1", nil},
		{a1.ID, Running, Done, "out-again", ErrConflict}, // completed twice
		{a1.ID, Running, Failed, "", ErrConflict},
		{a1.ID, Done, Queued, "", ErrInvalid},
		{a2.ID, Running, Done, "", ErrConflict}, // never started
		{a2.ID, Queued, Cancelled, "", nil},
		{a2.ID, Queued, Running, "", ErrConflict}, // cancelled
		{a3.ID, Queued, Running, "", nil},
		{a3.ID, Running, Queued, "", nil}, // run it again
		{a3.ID, Queued, Running, "", nil},
		{a3.ID, Queued, Done, "", ErrConflict}, // it is running
		{a3.ID, Done, Queued, "", ErrInvalid},
		{strings.Repeat("0", 32), Queued, Running, "", ErrNotFound},
	}
	for _, s := range steps {
		var result []byte
		if s.result != "" {
			result = []byte(s.result)
		}
		_, err := d.Transition(ctx, s.id, s.from, s.to, result)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("%s %s→%s: %v, want %v", s.id[:6], s.from, s.to, err, s.want)
		}
	}
	got, err := d.Job(ctx, "alice", a1.ID)
	if err != nil || got.State != Done || string(got.Result) != "out-1" || got.Attempts != 1 {
		t.Errorf("a1: %+v, %v", got, err)
	}
	if got, _ := d.Job(ctx, "alice", a3.ID); got.State != Running || got.Attempts != 2 {
		t.Errorf("a3: state %s, attempts %d", got.State, got.Attempts)
	}
	if us, _ := d.Usage(ctx, "alice"); us.Queued != 0 || us.Running != 1 {
		t.Errorf("alice's usage: %+v", us)
	}

	lists := []struct {
		f    JobFilter
		want []string
	}{
		{JobFilter{Owner: "alice"}, []string{a1.ID, a2.ID, a3.ID}},
		{JobFilter{Owner: "alice", Limit: 2}, []string{a1.ID, a2.ID}},
		{JobFilter{Owner: "alice", State: Running}, []string{a3.ID}},
		{JobFilter{Owner: "alice", State: Queued}, nil},
		{JobFilter{Owner: "bob"}, []string{b1.ID}},
		{JobFilter{State: Queued}, []string{b1.ID}},
		{JobFilter{}, []string{a1.ID, b1.ID, a2.ID, a3.ID}},
		{JobFilter{Owner: "carol"}, nil},
	}
	for _, l := range lists {
		jobs, err := d.ListJobs(ctx, l.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(l.want) {
			t.Errorf("list %+v: %v, want %v", l.f, ids, l.want)
		}
	}
	if _, err := d.ListJobs(ctx, JobFilter{State: "paused"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("list by an unknown state: %v", err)
	}
	checkConsistent(t, d)
}

// TestJobCompletesOnce races workers to complete the same jobs: each job is
// completed by exactly one of them.
func TestJobCompletesOnce(t *testing.T) {
	d := open(t, t.TempDir())
	const jobs, workers = 20, 8
	var ids []string
	for i := range jobs {
		j, _, err := d.CreateJob(ctx, NewJob{Owner: "alice", Request: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	var mu sync.Mutex
	started, done := map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range ids {
				if _, err := d.Transition(ctx, id, Queued, Running, nil); err == nil {
					mu.Lock()
					started[id]++
					mu.Unlock()
				} else if !errors.Is(err, ErrConflict) {
					t.Error(err)
				}
				if _, err := d.Transition(ctx, id, Running, Done, []byte(fmt.Sprint(w))); err == nil {
					mu.Lock()
					done[id]++
					mu.Unlock()
				} else if !errors.Is(err, ErrConflict) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if started[id] != 1 || done[id] != 1 {
			t.Errorf("job %s started %d times and completed %d times", id, started[id], done[id])
		}
	}
	checkConsistent(t, d)
}

// TestBlobHammer has goroutines put and delete the same few blobs for two
// keys at once; the records and files agree at the end.
func TestBlobHammer(t *testing.T) {
	d := open(t, t.TempDir())
	const goroutines, iterations = 6, 30
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := []string{"alice", "bob"}[g%2]
			for i := range iterations {
				data := []byte(fmt.Sprint("blob ", i%3))
				info, err := d.PutBlob(ctx, owner, bytes.NewReader(data), 100)
				if err != nil {
					t.Error(err)
					return
				}
				if f, _, err := d.OpenBlob(ctx, owner, info.Hash); err == nil {
					got, _ := io.ReadAll(f)
					f.Close()
					if !bytes.Equal(got, data) {
						t.Errorf("read %q, want %q", got, data)
					}
				} else if !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				if err := d.DeleteBlob(ctx, owner, info.Hash); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	checkConsistent(t, d)
}

func TestUsage(t *testing.T) {
	d := open(t, t.TempDir())
	d.PutBlob(ctx, "alice", strings.NewReader("0123456789"), 100)
	d.PutBlob(ctx, "alice", strings.NewReader("abc"), 100)
	d.PutBlob(ctx, "bob", strings.NewReader("abc"), 100)
	d.CreateUpload(ctx, "alice", 1000, "")
	j, _, _ := d.CreateJob(ctx, NewJob{Owner: "alice"})
	d.CreateJob(ctx, NewJob{Owner: "alice"})
	d.Transition(ctx, j.ID, Queued, Running, nil)
	tests := []struct {
		owner string
		want  Usage
	}{
		{"alice", Usage{Blobs: 2, BlobBytes: 13, Uploads: 1, UploadBytes: 1000, Queued: 1, Running: 1}},
		{"bob", Usage{Blobs: 1, BlobBytes: 3}},
		{"carol", Usage{}},
	}
	for _, tt := range tests {
		if got, err := d.Usage(ctx, tt.owner); err != nil || got != tt.want {
			t.Errorf("usage of %s: %+v, %v; want %+v", tt.owner, got, err, tt.want)
		}
	}
	checkConsistent(t, d)
}

// TestRecover leaves behind what a crash would and opens the store again.
func TestRecover(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	running, _, _ := d.CreateJob(ctx, NewJob{Owner: "alice", Request: []byte("r")})
	d.Transition(ctx, running.ID, Queued, Running, nil)
	queued, _, _ := d.CreateJob(ctx, NewJob{Owner: "alice", Request: []byte("q")})
	finished, _, _ := d.CreateJob(ctx, NewJob{Owner: "bob", Request: []byte("f")})
	d.Transition(ctx, finished.ID, Queued, Running, nil)
	d.Transition(ctx, finished.ID, Running, Done, []byte("out"))
	kept, _ := d.PutBlob(ctx, "alice", strings.NewReader("kept"), 100)
	d.Close()

	// What a crash leaves: a half-written temp file, a blob file renamed
	// into place but never recorded, a staging file never recorded.
	os.WriteFile(filepath.Join(dir, tmpDir, "blob-123"), []byte("half"), 0o600)
	orphan := sum([]byte("orphan"))
	os.MkdirAll(filepath.Join(dir, blobsDir, orphan[:2]), 0o700)
	os.WriteFile(filepath.Join(dir, blobsDir, orphan[:2], orphan[2:]), []byte("orphan"), 0o400)
	os.WriteFile(filepath.Join(dir, uploadsDir, strings.Repeat("e", 32)), nil, 0o600)

	d = open(t, dir)
	rec := d.Recovered()
	if rec.RequeuedJobs != 1 || rec.RemovedTemp != 1 || rec.RemovedOrphans != 2 || rec.MissingBlobs != nil || rec.LostUploads != nil {
		t.Errorf("recovery: %+v", rec)
	}
	want := map[string]State{running.ID: Queued, queued.ID: Queued, finished.ID: Done}
	for id, state := range want {
		owner := "alice"
		if id == finished.ID {
			owner = "bob"
		}
		if j, err := d.Job(ctx, owner, id); err != nil || j.State != state {
			t.Errorf("job %s: %s, %v; want %s", id, j.State, err, state)
		}
	}
	if got := readBlob(t, d, "alice", kept.Hash); string(got) != "kept" {
		t.Errorf("kept blob: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, blobsDir, orphan[:2], orphan[2:])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan blob file: %v", err)
	}
	checkConsistent(t, d)
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) || err.Error() != fmt.Sprintf("data directory %s is in use by another process", dir) {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("second open took %v", time.Since(start))
	}
	d.Close()
	d2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d2.Close()
}

// TestJobRecordedFinished records jobs that already ran, in one commit
// each, under ids the caller chose.
func TestJobRecordedFinished(t *testing.T) {
	d := open(t, t.TempDir())
	id := NewID()
	j, created, err := d.CreateJob(ctx, NewJob{Owner: "alice", IdempotencyKey: "k", Request: []byte(`{}`), ID: id, State: Done, Result: []byte("out")})
	if err != nil || !created || j.ID != id || j.State != Done || string(j.Result) != "out" || j.Attempts != 1 {
		t.Fatalf("record a finished job: %+v, %v, %v", j, created, err)
	}
	if got, err := d.JobByKey(ctx, "alice", "k"); err != nil || got.ID != id {
		t.Errorf("by its key: %+v, %v", got, err)
	}
	if u, _ := d.Usage(ctx, "alice"); u.Queued != 0 || u.Running != 0 {
		t.Errorf("a finished job counts in usage: %+v", u)
	}
	if _, err := d.Transition(ctx, id, Queued, Done, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("completing it again: %v, want ErrConflict", err)
	}
	for _, tc := range []struct {
		nj   NewJob
		want error
	}{
		{NewJob{Owner: "alice", ID: id}, ErrConflict},
		{NewJob{Owner: "alice", ID: "XYZ"}, ErrInvalid},
		{NewJob{Owner: "alice", State: Running}, ErrInvalid},
	} {
		if _, _, err := d.CreateJob(ctx, tc.nj); !errors.Is(err, tc.want) {
			t.Errorf("CreateJob(%+v): %v, want %v", tc.nj, err, tc.want)
		}
	}
}
