package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// blobRecord is a blob's entry: its size and how many owners reference it.
// A record exists exactly when the file is in place.
type blobRecord struct {
	Size int64
	Refs int64
}

// refRecord is one owner's reference to a blob.
type refRecord struct {
	Time time.Time
}

// PutBlob streams r into a file in tmp/, hashing it, syncs the file, renames it
// to its hash's name, syncs that directory, and then records owner's
// reference. A crash before the record leaves a file no record refers to,
// which the next Open removes.
func (d *Disk) PutBlob(ctx context.Context, owner string, r io.Reader, max int64) (BlobInfo, error) {
	if err := validOwner(owner); err != nil {
		return BlobInfo{}, err
	}
	if max < 0 {
		return BlobInfo{}, fmt.Errorf("blob size limit %d: %w", max, ErrInvalid)
	}
	limit := max // reading one byte more tells a blob at the limit from a longer one
	if limit < math.MaxInt64 {
		limit++
	}
	f, err := os.CreateTemp(filepath.Join(d.dir, tmpDir), "blob-")
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, there is nothing to remove
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, limit))
	if err == nil && n > max {
		err = fmt.Errorf("blob is over %d bytes: %w", max, ErrTooLarge)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return BlobInfo{}, err
		}
		return BlobInfo{}, fmt.Errorf("blob: %w", err)
	}
	hash := hex.EncodeToString(h.Sum(nil))
	info, err := d.addBlob(owner, hash, n, func(dst string) error { return os.Rename(tmp, dst) }, nil)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", hash, err)
	}
	return info, nil
}

// addBlob records owner's reference to the blob hash of size bytes. If no
// file holds the blob yet, place puts one at the path it is given (atomically:
// by a rename), and addBlob syncs its directory before recording. also, if not
// nil, runs in the transaction that records the reference.
func (d *Disk) addBlob(owner, hash string, size int64, place func(dst string) error, also func(*bolt.Tx) error) (BlobInfo, error) {
	mu := lockFor(&d.blobLocks, hash)
	mu.Lock()
	defer mu.Unlock()
	var exists bool
	if err := d.db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket(bucketBlobs).Get([]byte(hash)) != nil
		return nil
	}); err != nil {
		return BlobInfo{}, err
	}
	if !exists {
		dst := d.blobPath(hash)
		fan := filepath.Dir(dst)
		if err := d.makeFan(hash); err != nil {
			return BlobInfo{}, err
		}
		if err := place(dst); err != nil {
			return BlobInfo{}, err
		}
		if err := os.Chmod(dst, 0o400); err != nil {
			return BlobInfo{}, err
		}
		if err := syncDir(fan); err != nil {
			return BlobInfo{}, err
		}
	}
	info := BlobInfo{Hash: hash, Size: size}
	err := d.db.Update(func(tx *bolt.Tx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return addRef(tx, owner, hash, size, &info)
	})
	return info, err
}

// addRef records owner's reference to a blob whose file is in place.
func addRef(tx *bolt.Tx, owner, hash string, size int64, info *BlobInfo) error {
	refs, key := tx.Bucket(bucketRefs), ownerKey(owner, hash)
	var ref refRecord
	if ok, err := getJSON(refs, key, &ref); err != nil || ok {
		info.Time = ref.Time
		return err // owner has it already
	}
	blobs := tx.Bucket(bucketBlobs)
	var rec blobRecord
	if _, err := getJSON(blobs, []byte(hash), &rec); err != nil {
		return err
	}
	rec.Size = size
	rec.Refs++
	if err := putJSON(blobs, []byte(hash), rec); err != nil {
		return err
	}
	ref.Time = time.Now().UTC()
	info.Time = ref.Time
	if err := putJSON(refs, key, ref); err != nil {
		return err
	}
	return addUsage(tx, owner, func(u *Usage) { u.Blobs++; u.BlobBytes += size })
}

// statBlob reads owner's reference to hash within tx.
func statBlob(tx *bolt.Tx, owner, hash string) (BlobInfo, error) {
	var ref refRecord
	ok, err := getJSON(tx.Bucket(bucketRefs), ownerKey(owner, hash), &ref)
	if err != nil {
		return BlobInfo{}, err
	}
	if !ok {
		return BlobInfo{}, ErrNotFound
	}
	var rec blobRecord
	if _, err := getJSON(tx.Bucket(bucketBlobs), []byte(hash), &rec); err != nil {
		return BlobInfo{}, err
	}
	return BlobInfo{Hash: hash, Size: rec.Size, Time: ref.Time}, nil
}

// StatBlob reports owner's blob.
func (d *Disk) StatBlob(ctx context.Context, owner, hash string) (BlobInfo, error) {
	if err := checkBlobArgs(ctx, owner, hash); err != nil {
		return BlobInfo{}, err
	}
	var info BlobInfo
	err := d.db.View(func(tx *bolt.Tx) (err error) {
		info, err = statBlob(tx, owner, hash)
		return err
	})
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", hash, err)
	}
	return info, nil
}

// OpenBlob opens owner's blob for reading.
func (d *Disk) OpenBlob(ctx context.Context, owner, hash string) (io.ReadSeekCloser, BlobInfo, error) {
	if err := checkBlobArgs(ctx, owner, hash); err != nil {
		return nil, BlobInfo{}, err
	}
	// The hash's lock keeps DeleteBlob from removing the file between the
	// check and the open; once open, a removal leaves it readable.
	mu := lockFor(&d.blobLocks, hash)
	mu.Lock()
	defer mu.Unlock()
	var info BlobInfo
	err := d.db.View(func(tx *bolt.Tx) (err error) {
		info, err = statBlob(tx, owner, hash)
		return err
	})
	if err != nil {
		return nil, BlobInfo{}, fmt.Errorf("blob %s: %w", hash, err)
	}
	f, err := os.Open(d.blobPath(hash))
	if err != nil {
		return nil, BlobInfo{}, fmt.Errorf("blob %s: %w", hash, err)
	}
	return f, info, nil
}

// DeleteBlob removes owner's reference, and the file once nobody references
// it. The record goes first: a crash before the file goes leaves a file no
// record refers to, which the next Open removes.
func (d *Disk) DeleteBlob(ctx context.Context, owner, hash string) error {
	if err := checkBlobArgs(ctx, owner, hash); err != nil {
		return err
	}
	mu := lockFor(&d.blobLocks, hash)
	mu.Lock()
	defer mu.Unlock()
	var last bool
	err := d.db.Update(func(tx *bolt.Tx) error {
		info, err := statBlob(tx, owner, hash)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketRefs).Delete(ownerKey(owner, hash)); err != nil {
			return err
		}
		blobs := tx.Bucket(bucketBlobs)
		var rec blobRecord
		if _, err := getJSON(blobs, []byte(hash), &rec); err != nil {
			return err
		}
		if rec.Refs--; rec.Refs <= 0 {
			last = true
			err = blobs.Delete([]byte(hash))
		} else {
			err = putJSON(blobs, []byte(hash), rec)
		}
		if err != nil {
			return err
		}
		return addUsage(tx, owner, func(u *Usage) { u.Blobs--; u.BlobBytes -= info.Size })
	})
	if err != nil {
		return fmt.Errorf("blob %s: %w", hash, err)
	}
	if last {
		// Once the record is gone, a file left behind (a failed removal,
		// a crash) is removed by the next Open.
		path := d.blobPath(hash)
		if os.Remove(path) == nil {
			syncDir(filepath.Dir(path))
		}
	}
	return nil
}

// ListBlobs lists owner's blobs by hash.
func (d *Disk) ListBlobs(ctx context.Context, owner string) ([]BlobInfo, error) {
	if err := validOwner(owner); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []BlobInfo
	err := d.db.View(func(tx *bolt.Tx) error {
		prefix := ownerPrefix(owner)
		c := tx.Bucket(bucketRefs).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			info, err := statBlob(tx, owner, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blobs of %s: %w", owner, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	return out, nil
}

func checkBlobArgs(ctx context.Context, owner, hash string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	if err := validHash(hash); err != nil {
		return err
	}
	return ctx.Err()
}
