package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// An upload's bytes go to its staging file, uploads/<id>, made at its declared
// size. A chunk is written and synced before its range is recorded, so after a
// crash every recorded range holds the bytes that were acknowledged.

// CreateUpload starts an upload of size bytes.
func (d *Disk) CreateUpload(ctx context.Context, owner string, size int64, sum string) (Upload, error) {
	if err := validOwner(owner); err != nil {
		return Upload{}, err
	}
	if size < 0 {
		return Upload{}, fmt.Errorf("upload size %d: %w", size, ErrInvalid)
	}
	if sum != "" {
		if err := validHash(sum); err != nil {
			return Upload{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return Upload{}, err
	}
	u := Upload{ID: newID(), Owner: owner, Size: size, SHA256: sum, Created: time.Now().UTC()}
	path := d.stagingPath(u.ID)
	err := func() error {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		err = f.Truncate(size)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncDir(filepath.Dir(path))
		}
		if err != nil {
			return err
		}
		return d.db.Update(func(tx *bolt.Tx) error {
			if err := putJSON(tx.Bucket(bucketUploads), []byte(u.ID), u); err != nil {
				return err
			}
			return addUsage(tx, owner, func(us *Usage) { us.Uploads++; us.UploadBytes += size })
		})
	}()
	if err != nil {
		os.Remove(path)
		return Upload{}, fmt.Errorf("upload: %w", err)
	}
	return u, nil
}

// loadUpload reads owner's upload record.
func (d *Disk) loadUpload(owner, id string) (Upload, error) {
	var u Upload
	err := d.db.View(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketUploads), []byte(id), &u)
		if err == nil && (!ok || u.Owner != owner) {
			err = ErrNotFound
		}
		return err
	})
	u.Offset = contiguous(u.Received)
	return u, err
}

// Upload reports owner's upload.
func (d *Disk) Upload(ctx context.Context, owner, id string) (Upload, error) {
	if err := checkUploadArgs(ctx, owner, id); err != nil {
		return Upload{}, err
	}
	u, err := d.loadUpload(owner, id)
	if err != nil {
		return Upload{}, fmt.Errorf("upload %s: %w", id, err)
	}
	return u, nil
}

// WriteChunk writes n bytes from r at offset, checks them against any bytes
// already received there, syncs them, and then records their range.
func (d *Disk) WriteChunk(ctx context.Context, owner, id string, offset, n int64, r io.Reader) (Upload, error) {
	if err := checkUploadArgs(ctx, owner, id); err != nil {
		return Upload{}, err
	}
	mu := lockFor(&d.uploadLocks, id)
	mu.Lock()
	defer mu.Unlock()
	u, err := d.writeChunk(ctx, owner, id, offset, n, r)
	if err != nil {
		return Upload{}, fmt.Errorf("upload %s: %w", id, err)
	}
	return u, nil
}

func (d *Disk) writeChunk(ctx context.Context, owner, id string, offset, n int64, r io.Reader) (Upload, error) {
	u, err := d.loadUpload(owner, id)
	if err != nil {
		return Upload{}, err
	}
	if offset < 0 || n < 0 || offset > u.Size || n > u.Size-offset {
		return Upload{}, fmt.Errorf("chunk of %d bytes at %d is outside its %d bytes: %w", n, offset, u.Size, ErrRange)
	}
	if n == 0 {
		return u, nil
	}
	f, err := os.OpenFile(d.stagingPath(id), os.O_RDWR, 0)
	if err != nil {
		return Upload{}, err
	}
	defer f.Close()
	buf := make([]byte, min(n, 1<<20))
	var old []byte
	r = ctxReader{ctx, r}
	for pos, end := offset, offset+n; pos < end; {
		piece := buf[:min(int64(len(buf)), end-pos)]
		if _, err := io.ReadFull(r, piece); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return Upload{}, fmt.Errorf("chunk at %d ended before its %d bytes: %w", offset, n, io.ErrUnexpectedEOF)
			}
			return Upload{}, err
		}
		// Bytes already received must be sent again unchanged.
		for _, rg := range u.Received {
			s, e := max(rg.Start, pos), min(rg.End, pos+int64(len(piece)))
			if s >= e {
				continue
			}
			old = append(old[:0], make([]byte, e-s)...)
			if _, err := f.ReadAt(old, s); err != nil {
				return Upload{}, err
			}
			if !bytes.Equal(old, piece[s-pos:e-pos]) {
				return Upload{}, fmt.Errorf("chunk at %d differs from the bytes received at %d: %w", offset, s, ErrConflict)
			}
		}
		if _, err := f.WriteAt(piece, pos); err != nil {
			return Upload{}, err
		}
		pos += int64(len(piece))
	}
	if err := f.Sync(); err != nil {
		return Upload{}, err
	}
	u.Received = addRange(u.Received, Range{offset, offset + n})
	u.Offset = contiguous(u.Received)
	err = d.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketUploads), []byte(id), u)
	})
	return u, err
}

// CommitUpload hashes the staging file and, if it matches, links it into the
// blob store and records the blob and the end of the upload in one
// transaction. A crash after the link and before the transaction leaves a
// blob file no record refers to (removed at the next Open) and the upload as
// it was.
func (d *Disk) CommitUpload(ctx context.Context, owner, id, sum string) (BlobInfo, error) {
	if err := checkUploadArgs(ctx, owner, id); err != nil {
		return BlobInfo{}, err
	}
	if sum != "" {
		if err := validHash(sum); err != nil {
			return BlobInfo{}, err
		}
	}
	mu := lockFor(&d.uploadLocks, id)
	mu.Lock()
	defer mu.Unlock()
	info, err := d.commit(ctx, owner, id, sum)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("upload %s: %w", id, err)
	}
	return info, nil
}

func (d *Disk) commit(ctx context.Context, owner, id, sum string) (BlobInfo, error) {
	u, err := d.loadUpload(owner, id)
	if err != nil {
		return BlobInfo{}, err
	}
	if !u.Complete() {
		var got int64
		for _, r := range u.Received {
			got += r.End - r.Start
		}
		return BlobInfo{}, fmt.Errorf("incomplete: %d of %d bytes received: %w", got, u.Size, ErrRange)
	}
	staging := d.stagingPath(id)
	f, err := os.Open(staging)
	if err != nil {
		return BlobInfo{}, err
	}
	h := sha256.New()
	_, err = io.Copy(h, io.LimitReader(ctxReader{ctx, f}, u.Size))
	f.Close()
	if err != nil {
		return BlobInfo{}, err
	}
	hash := hex.EncodeToString(h.Sum(nil))
	for _, want := range []string{u.SHA256, sum} {
		if want != "" && want != hash {
			if err := d.discard(u); err != nil {
				return BlobInfo{}, err
			}
			return BlobInfo{}, fmt.Errorf("bytes have sha256 %s, not %s; the upload is discarded: %w", hash, want, ErrHashMismatch)
		}
	}
	place := func(dst string) error {
		// A hard link, renamed into place, gives the blob the staging
		// file's synced bytes without copying them.
		tmp := filepath.Join(d.dir, tmpDir, "commit-"+id)
		os.Remove(tmp)
		if err := os.Link(staging, tmp); err != nil {
			if err := copyFile(staging, tmp); err != nil {
				return err
			}
		}
		return os.Rename(tmp, dst)
	}
	info, err := d.addBlob(owner, hash, u.Size, place, func(tx *bolt.Tx) error { return dropUpload(tx, u) })
	if err != nil {
		return BlobInfo{}, err
	}
	os.Remove(staging) // if this fails, the next Open removes it
	return info, nil
}

// AbortUpload ends an upload and discards its bytes.
func (d *Disk) AbortUpload(ctx context.Context, owner, id string) error {
	if err := checkUploadArgs(ctx, owner, id); err != nil {
		return err
	}
	mu := lockFor(&d.uploadLocks, id)
	mu.Lock()
	defer mu.Unlock()
	u, err := d.loadUpload(owner, id)
	if err == nil {
		err = d.discard(u)
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	return nil
}

// discard removes an upload's record and then its staging file.
func (d *Disk) discard(u Upload) error {
	if err := d.db.Update(func(tx *bolt.Tx) error { return dropUpload(tx, u) }); err != nil {
		return err
	}
	os.Remove(d.stagingPath(u.ID)) // if this fails, the next Open removes it
	return nil
}

func dropUpload(tx *bolt.Tx, u Upload) error {
	if err := tx.Bucket(bucketUploads).Delete([]byte(u.ID)); err != nil {
		return err
	}
	return addUsage(tx, u.Owner, func(us *Usage) { us.Uploads--; us.UploadBytes -= u.Size })
}

// copyFile copies src to a new file dst and syncs it, where hard links are
// not to be had.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func checkUploadArgs(ctx context.Context, owner, id string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	if err := validID("upload", id); err != nil {
		return err
	}
	return ctx.Err()
}

// addRange adds r to the sorted, merged ranges rs, merging where they touch.
func addRange(rs []Range, r Range) []Range {
	out := make([]Range, 0, len(rs)+1)
	i := 0
	for ; i < len(rs) && rs[i].End < r.Start; i++ {
		out = append(out, rs[i])
	}
	for ; i < len(rs) && rs[i].Start <= r.End; i++ {
		r.Start, r.End = min(r.Start, rs[i].Start), max(r.End, rs[i].End)
	}
	out = append(out, r)
	return append(out, rs[i:]...)
}

// contiguous is how many bytes from 0 the ranges cover.
func contiguous(rs []Range) int64 {
	if len(rs) > 0 && rs[0].Start == 0 {
		return rs[0].End
	}
	return 0
}
