package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var ctx = context.Background()

// open opens a store in dir and closes it when the test ends.
func open(t *testing.T, dir string) *Disk {
	t.Helper()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// content is n bytes that depend only on seed and i, so that a parent can
// rebuild what a child process wrote.
func content(seed uint64, i, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

// readBlob reads owner's blob whole.
func readBlob(t *testing.T, d *Disk, owner, hash string) []byte {
	t.Helper()
	f, _, err := d.OpenBlob(ctx, owner, hash)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putChunks writes data to an upload in the given chunks, each [start, end).
func putChunks(t *testing.T, d *Disk, owner, id string, data []byte, chunks []Range) Upload {
	t.Helper()
	var u Upload
	for _, c := range chunks {
		var err error
		u, err = d.WriteChunk(ctx, owner, id, c.Start, c.End-c.Start, bytes.NewReader(data[c.Start:c.End]))
		if err != nil {
			t.Fatalf("chunk %d-%d: %v", c.Start, c.End, err)
		}
	}
	return u
}

// checkConsistent checks every invariant the store keeps between records and
// files: each blob file re-hashes to its name and has a record, and each record
// a file; reference counts and sizes agree; staging files match their uploads
// in name and size; tmp/ is empty; the job index and idempotency keys point at
// jobs; and the usage counters equal what the records add up to.
func checkConsistent(t *testing.T, d *Disk) {
	t.Helper()
	files := map[string]bool{}
	root := filepath.Join(d.dir, blobsDir)
	filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		hash := filepath.Dir(rel) + filepath.Base(rel)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := sum(b); got != hash {
			t.Errorf("blob file %s hashes to %s", rel, got)
		}
		files[hash] = true
		return nil
	})
	if tmp, _ := os.ReadDir(filepath.Join(d.dir, tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d files", len(tmp))
	}
	staging := map[string]int64{}
	entries, _ := os.ReadDir(filepath.Join(d.dir, uploadsDir))
	for _, e := range entries {
		info, _ := e.Info()
		staging[e.Name()] = info.Size()
	}

	want := map[string]Usage{}
	err := d.db.View(func(tx *bolt.Tx) error {
		refs := map[string]int64{}
		tx.Bucket(bucketRefs).ForEach(func(k, _ []byte) error {
			i := bytes.IndexByte(k, 0)
			owner, hash := string(k[:i]), string(k[i+1:])
			refs[hash]++
			var rec blobRecord
			if ok, _ := getJSON(tx.Bucket(bucketBlobs), []byte(hash), &rec); !ok {
				t.Errorf("%s references blob %s, which has no record", owner, hash)
			}
			u := want[owner]
			u.Blobs++
			u.BlobBytes += rec.Size
			want[owner] = u
			return nil
		})
		tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			var rec blobRecord
			json.Unmarshal(v, &rec)
			if rec.Refs != refs[string(k)] {
				t.Errorf("blob %s counts %d references, has %d", k, rec.Refs, refs[string(k)])
			}
			if !files[string(k)] {
				t.Errorf("blob %s has a record and no file", k)
			}
			delete(files, string(k))
			return nil
		})
		for hash := range files {
			t.Errorf("blob file %s has no record", hash)
		}
		tx.Bucket(bucketUploads).ForEach(func(k, v []byte) error {
			var u Upload
			json.Unmarshal(v, &u)
			if size, ok := staging[string(k)]; !ok || size != u.Size {
				t.Errorf("upload %s of %d bytes: staging file present %v, %d bytes", k, u.Size, ok, size)
			}
			delete(staging, string(k))
			us := want[u.Owner]
			us.Uploads++
			us.UploadBytes += u.Size
			want[u.Owner] = us
			return nil
		})
		for id := range staging {
			t.Errorf("staging file %s has no upload", id)
		}
		jobs := tx.Bucket(bucketJobs)
		n := 0
		jobs.ForEach(func(_, v []byte) error {
			var r jobRecord
			json.Unmarshal(v, &r)
			u := want[r.Owner]
			countState(&u, r.State, 1)
			want[r.Owner] = u
			n++
			if tx.Bucket(bucketJobIndex).Get(seqKey(r.Owner, r.Seq)) == nil {
				t.Errorf("job %s is not in its owner's index", r.ID)
			}
			return nil
		})
		if got := tx.Bucket(bucketJobIndex).Stats().KeyN; got != n {
			t.Errorf("job index has %d entries for %d jobs", got, n)
		}
		tx.Bucket(bucketIdem).ForEach(func(k, id []byte) error {
			var r jobRecord
			if ok, _ := getJSON(jobs, id, &r); !ok || !bytes.HasPrefix(k, ownerPrefix(r.Owner)) {
				t.Errorf("idempotency key %q points at job %s of another owner or none", k, id)
			}
			return nil
		})
		got := map[string]Usage{}
		tx.Bucket(bucketUsage).ForEach(func(k, v []byte) error {
			var u Usage
			json.Unmarshal(v, &u)
			got[string(k)] = u
			return nil
		})
		for owner, u := range want {
			if got[owner] != u {
				t.Errorf("usage of %s is %+v; the records add up to %+v", owner, got[owner], u)
			}
			delete(got, owner)
		}
		for owner, u := range got {
			t.Errorf("usage of %s is %+v; the records hold nothing of it", owner, u)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
