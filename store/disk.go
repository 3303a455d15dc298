package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The data directory holds:
//
//	store.db          the bbolt database: blob references, uploads, jobs, usage
//	blobs/ab/cdef...  each blob, named by its sha256, read-only once written
//	uploads/<id>      the staging file of an upload in progress
//	actors/           actors' modules and snapshots (actors.go)
//	tmp/              files being written; emptied at open
const (
	dbName     = "store.db"
	blobsDir   = "blobs"
	uploadsDir = "uploads"
	tmpDir     = "tmp"
)

// Buckets of the database. Keys that start with an owner separate it from the
// rest with a zero byte, which an owner may not contain.
var (
	bucketBlobs    = []byte("blobs")    // hash → blobRecord
	bucketRefs     = []byte("refs")     // owner 0 hash → refRecord
	bucketUploads  = []byte("uploads")  // id → uploadRecord
	bucketJobs     = []byte("jobs")     // id → jobRecord
	bucketJobIndex = []byte("jobindex") // owner 0 seq (8 bytes, big-endian) → id
	bucketIdem     = []byte("idem")     // owner 0 idempotency key → id
	bucketUsage    = []byte("usage")    // owner → Usage
	// actors.go
	bucketActors       = []byte("actors")       // owner 0 id → actorRecord
	bucketActorModules = []byte("actormodules") // sha256 → actors that run it (8 bytes, big-endian)
	allBuckets         = [][]byte{bucketBlobs, bucketRefs, bucketUploads, bucketJobs, bucketJobIndex, bucketIdem, bucketUsage, bucketActors, bucketActorModules}
)

// Options configure Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the data directory; 1s if zero.
	LockTimeout time.Duration
}

// Recovery says what Open repaired after an unclean stop.
type Recovery struct {
	RequeuedJobs   int      // jobs left running, queued again
	RemovedTemp    int      // files left in tmp/
	RemovedOrphans int      // blob and staging files no record refers to
	MissingBlobs   []string // blob records whose file is gone (should not happen)
	LostUploads    []string // upload records whose staging file is gone (should not happen)
}

// Disk is the embedded Store: one data directory on a local file system,
// used by one process at a time.
type Disk struct {
	dir      string
	db       *bolt.DB
	recovery Recovery

	// A blob's file and its record change together under its hash's lock,
	// an upload's under its id's. Code that takes both takes the upload's
	// first.
	blobLocks   [64]sync.Mutex
	uploadLocks [64]sync.Mutex

	// fans holds the fan-out directories of blobs/ known to be durable:
	// those there at Open (which synced blobs/), and those made since and
	// followed by a sync of blobs/.
	fans sync.Map
}

var _ Store = (*Disk)(nil)

// inUseError names the data directory another process holds.
type inUseError struct{ dir string }

func (e *inUseError) Error() string {
	return fmt.Sprintf("data directory %s is in use by another process", e.dir)
}
func (e *inUseError) Unwrap() error { return ErrInUse }

// Open opens the data directory dir, creating it if needed, and repairs what
// an unclean stop left: it empties tmp/, removes blob and staging files no
// record refers to, and queues again every job that was running (jobs are
// idempotent, so they are run again). Another process holding dir makes Open
// fail with an error that wraps ErrInUse.
func Open(dir string, opts Options) (*Disk, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, dbName), 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &inUseError{dir}
	}
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	// Job records are written in batches: a commit waits at most this long
	// for others to join it.
	db.MaxBatchDelay = 100 * time.Microsecond
	d := &Disk{dir: dir, db: db}
	if err := d.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return d, nil
}

// Recovered reports what Open repaired.
func (d *Disk) Recovered() Recovery { return d.recovery }

// Close closes the database and releases the data directory.
func (d *Disk) Close() error { return d.db.Close() }

// init makes the layout and recovers, holding the database's lock.
func (d *Disk) init() error {
	for _, sub := range []string{blobsDir, uploadsDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return err
		}
	}
	for _, dir := range []string{filepath.Join(d.dir, blobsDir), d.dir} {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	if err := d.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// Files in tmp/ were never acknowledged.
	entries, err := os.ReadDir(filepath.Join(d.dir, tmpDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.dir, tmpDir, e.Name())); err != nil {
			return err
		}
		d.recovery.RemovedTemp++
	}
	if err := d.requeue(); err != nil {
		return err
	}
	if err := d.sweepUploads(); err != nil {
		return err
	}
	if err := d.sweepActors(); err != nil {
		return err
	}
	return d.sweepBlobs()
}

// requeue puts every running job back in the queue.
func (d *Disk) requeue() error {
	return d.db.Update(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		var stuck []jobRecord
		err := jobs.ForEach(func(_, v []byte) error {
			var r jobRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.State == Running {
				stuck = append(stuck, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		for _, r := range stuck {
			r.State, r.Updated = Queued, now
			if err := putJSON(jobs, []byte(r.ID), r); err != nil {
				return err
			}
			if err := addUsage(tx, r.Owner, func(u *Usage) { u.Running--; u.Queued++ }); err != nil {
				return err
			}
		}
		d.recovery.RequeuedJobs = len(stuck)
		return nil
	})
}

// sweepUploads removes staging files without a record, and records without a
// staging file.
func (d *Disk) sweepUploads() error {
	entries, err := os.ReadDir(filepath.Join(d.dir, uploadsDir))
	if err != nil {
		return err
	}
	files := map[string]bool{}
	for _, e := range entries {
		files[e.Name()] = true
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		var lost []Upload
		err := b.ForEach(func(k, v []byte) error {
			if files[string(k)] {
				delete(files, string(k))
				return nil
			}
			var r Upload
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			lost = append(lost, r)
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range lost {
			if err := b.Delete([]byte(r.ID)); err != nil {
				return err
			}
			if err := addUsage(tx, r.Owner, func(u *Usage) { u.Uploads--; u.UploadBytes -= r.Size }); err != nil {
				return err
			}
			d.recovery.LostUploads = append(d.recovery.LostUploads, r.ID)
		}
		for name := range files {
			if err := os.RemoveAll(filepath.Join(d.dir, uploadsDir, name)); err != nil {
				return err
			}
			d.recovery.RemovedOrphans++
		}
		return nil
	})
}

// sweepBlobs removes blob files without a record (a put or commit that
// stopped between the rename and the record) and notes records without a
// file.
func (d *Disk) sweepBlobs() error {
	root := filepath.Join(d.dir, blobsDir)
	seen := map[string]bool{}
	return d.db.View(func(tx *bolt.Tx) error {
		blobs := tx.Bucket(bucketBlobs)
		fans, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		for _, fan := range fans {
			path := filepath.Join(root, fan.Name())
			if !fan.IsDir() {
				if err := os.Remove(path); err != nil {
					return err
				}
				d.recovery.RemovedOrphans++
				continue
			}
			entries, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			for _, e := range entries {
				hash := fan.Name() + e.Name()
				d.fans.Store(fan.Name(), true)
				if validHash(hash) == nil && blobs.Get([]byte(hash)) != nil {
					seen[hash] = true
					continue
				}
				if err := os.RemoveAll(filepath.Join(path, e.Name())); err != nil {
					return err
				}
				d.recovery.RemovedOrphans++
			}
		}
		return blobs.ForEach(func(k, _ []byte) error {
			if !seen[string(k)] {
				d.recovery.MissingBlobs = append(d.recovery.MissingBlobs, string(k))
			}
			return nil
		})
	})
}

// Paths.

func (d *Disk) blobPath(hash string) string {
	return filepath.Join(d.dir, blobsDir, hash[:2], hash[2:])
}

func (d *Disk) stagingPath(id string) string {
	return filepath.Join(d.dir, uploadsDir, id)
}

// makeFan makes sure that the fan-out directory for hash exists and that its
// entry in blobs/ is durable.
func (d *Disk) makeFan(hash string) error {
	if _, ok := d.fans.Load(hash[:2]); ok {
		return nil
	}
	// Whoever made it, a sync after it exists makes its entry durable.
	if err := os.Mkdir(filepath.Join(d.dir, blobsDir, hash[:2]), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(filepath.Join(d.dir, blobsDir)); err != nil {
		return err
	}
	d.fans.Store(hash[:2], true)
	return nil
}

// syncDir makes the entries of a directory (a rename, a new file) durable.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Checks of arguments.

func validHash(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("sha256 %q: want 64 lowercase hex digits: %w", h, ErrInvalid)
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("sha256 %q: want 64 lowercase hex digits: %w", h, ErrInvalid)
		}
	}
	return nil
}

func validOwner(owner string) error {
	if owner == "" || len(owner) > 256 || strings.IndexByte(owner, 0) >= 0 {
		return fmt.Errorf("owner %q: want 1 to 256 bytes without NUL: %w", owner, ErrInvalid)
	}
	return nil
}

// validID checks an upload or job id, which names a file.
func validID(what, id string) error {
	if len(id) != 32 {
		return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
		}
	}
	return nil
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}

// Keys and records.

func ownerKey(owner, rest string) []byte {
	return append(append(append([]byte(nil), owner...), 0), rest...)
}

func ownerPrefix(owner string) []byte {
	return append([]byte(owner), 0)
}

func seqKey(owner string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(ownerPrefix(owner), seq)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

// addUsage changes owner's usage within tx.
func addUsage(tx *bolt.Tx, owner string, change func(*Usage)) error {
	b := tx.Bucket(bucketUsage)
	var u Usage
	if _, err := getJSON(b, []byte(owner), &u); err != nil {
		return err
	}
	change(&u)
	if u == (Usage{}) {
		return b.Delete([]byte(owner))
	}
	return putJSON(b, []byte(owner), u)
}

// Usage reports what owner holds.
func (d *Disk) Usage(ctx context.Context, owner string) (Usage, error) {
	if err := validOwner(owner); err != nil {
		return Usage{}, err
	}
	if err := ctx.Err(); err != nil {
		return Usage{}, err
	}
	var u Usage
	err := d.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bucketUsage), []byte(owner), &u)
		return err
	})
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %s: %w", owner, err)
	}
	return u, nil
}

func lockFor(locks *[64]sync.Mutex, key string) *sync.Mutex {
	h := fnv.New32a()
	io.WriteString(h, key)
	return &locks[h.Sum32()%uint32(len(locks))]
}

// ctxReader stops reading when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
