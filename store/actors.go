package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ActorStore keeps the actors of a node (stateful guests, see node's
// actor.go): a record for each, the module it runs, and its latest
// snapshot. Snapshots are opaque bytes to the store; the node seals them
// before they arrive. As everywhere in the store, an owner sees only its
// own actors, and another owner's is ErrNotFound.
//
// This is an interface for decoupling, not third-party implementations.
type ActorStore interface {
	// PutActor creates owner's actor a.ID, or updates it. Creating one
	// needs the module's bytes, which must hash to a.Module (the store
	// keeps one copy per module), and a snapshot. An update keeps the
	// module (pass nil; a different a.Module is ErrConflict) and replaces
	// the snapshot unless snapshot is nil. The record and the snapshot are
	// durable, and change together, when PutActor returns.
	PutActor(ctx context.Context, a Actor, module, snapshot []byte) error
	// Actor returns owner's actor record.
	Actor(ctx context.Context, owner, id string) (Actor, error)
	// LoadActor returns the bytes of owner's actor's module and of its
	// latest snapshot.
	LoadActor(ctx context.Context, owner, id string) (module, snapshot []byte, err error)
	// ListActors lists owner's actors by id; an empty owner lists every
	// owner's, for a node that starts and finds the actors it had.
	ListActors(ctx context.Context, owner string) ([]Actor, error)
	// DeleteActor removes owner's actor and its snapshot, and its module
	// when no other actor runs it.
	DeleteActor(ctx context.Context, owner, id string) error
}

// Actor is an actor's record.
type Actor struct {
	ID     string // 32 lowercase hex digits, from NewID
	Owner  string
	Module string // sha256 of the module, lowercase hex
	// Meta is the node's description of the actor, opaque to the store.
	Meta         []byte
	SnapshotSize int64
	Created      time.Time
	Updated      time.Time
}

// actorRecord is an actor as stored: the record and the file of its
// snapshot.
type actorRecord struct {
	Actor
	Snapshot string // file name in actors/snapshots
}

// Files of actors:
//
//	actors/modules/<sha256>           a module, while an actor runs it
//	actors/snapshots/<key>.<n>        an actor's snapshot, key the sha256 of
//	                                  owner 0 id, n counting its versions
//
// A new snapshot is written beside the old one, and the record is moved to
// it in a commit, so the record always names a complete file. Open removes
// the files no record names.
var (
	actorModulesDir   = filepath.Join("actors", "modules")
	actorSnapshotsDir = filepath.Join("actors", "snapshots")
)

func (d *Disk) actorModulePath(hash string) string {
	return filepath.Join(d.dir, actorModulesDir, hash)
}

func (d *Disk) actorSnapshotPath(name string) string {
	return filepath.Join(d.dir, actorSnapshotsDir, name)
}

func snapshotKey(owner, id string) string {
	sum := sha256.Sum256(ownerKey(owner, id))
	return hex.EncodeToString(sum[:])
}

// The locks: an actor's under its owner and id (in uploadLocks), then a
// module's under its hash (in blobLocks); the keys are apart from those of
// uploads and blobs.
func (d *Disk) actorLock(owner, id string) func() {
	mu := lockFor(&d.uploadLocks, "actor\x00"+owner+"\x00"+id)
	mu.Lock()
	return mu.Unlock
}

func (d *Disk) moduleLock(hash string) func() {
	mu := lockFor(&d.blobLocks, "actor-module\x00"+hash)
	mu.Lock()
	return mu.Unlock
}

func checkActor(owner, id string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	if err := validID("actor", id); err != nil {
		return fmt.Errorf("actor id %q: want 32 lowercase hex digits: %w", id, ErrInvalid)
	}
	return nil
}

// PutActor creates or updates an actor; see ActorStore.
func (d *Disk) PutActor(ctx context.Context, a Actor, module, snapshot []byte) error {
	if err := checkActor(a.Owner, a.ID); err != nil {
		return err
	}
	if err := validHash(a.Module); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer d.actorLock(a.Owner, a.ID)()
	key := ownerKey(a.Owner, a.ID)
	var old actorRecord
	var exists bool
	if err := d.db.View(func(tx *bolt.Tx) error {
		var err error
		exists, err = getJSON(tx.Bucket(bucketActors), key, &old)
		return err
	}); err != nil {
		return fmt.Errorf("actor %s: %w", a.ID, err)
	}
	switch {
	case exists && old.Module != a.Module:
		return fmt.Errorf("actor %s runs module %s, not %s: %w", a.ID, old.Module, a.Module, ErrConflict)
	case !exists && snapshot == nil:
		return fmt.Errorf("actor %s: a new actor needs a snapshot: %w", a.ID, ErrInvalid)
	}

	rec := actorRecord{Actor: a}
	rec.Meta = bytes.Clone(a.Meta)
	rec.Updated = time.Now().UTC()
	rec.Created = rec.Updated
	if exists {
		rec.Created = old.Created
		rec.Snapshot, rec.SnapshotSize = old.Snapshot, old.SnapshotSize
	}
	if snapshot != nil {
		name, err := d.writeSnapshot(snapshotKey(a.Owner, a.ID), old.Snapshot, snapshot)
		if err != nil {
			return fmt.Errorf("actor %s: snapshot: %w", a.ID, err)
		}
		rec.Snapshot, rec.SnapshotSize = name, int64(len(snapshot))
	}
	commit := func(also func(tx *bolt.Tx) error) error {
		return d.db.Update(func(tx *bolt.Tx) error {
			if also != nil {
				if err := also(tx); err != nil {
					return err
				}
			}
			return putJSON(tx.Bucket(bucketActors), key, rec)
		})
	}
	var err error
	if exists {
		err = commit(nil)
	} else {
		err = d.addActorModule(a.Module, module, commit)
	}
	if err != nil {
		if snapshot != nil {
			os.Remove(d.actorSnapshotPath(rec.Snapshot))
		}
		return fmt.Errorf("actor %s: %w", a.ID, err)
	}
	if snapshot != nil && old.Snapshot != "" {
		os.Remove(d.actorSnapshotPath(old.Snapshot)) // Open sweeps it if this is lost
	}
	return nil
}

// writeSnapshot writes data durably as the next version after prev of the
// snapshot named key, and returns its file name.
func (d *Disk) writeSnapshot(key, prev string, data []byte) (string, error) {
	n := uint64(0)
	if _, v, ok := strings.Cut(prev, "."); ok {
		n, _ = strconv.ParseUint(v, 10, 64)
	}
	name := key + "." + strconv.FormatUint(n+1, 10)
	if err := d.writeFile(d.actorSnapshotPath(name), data); err != nil {
		return "", err
	}
	return name, nil
}

// writeFile writes data to a file in tmp/, syncs it, renames it to path
// and syncs path's directory.
func (d *Disk) writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(d.dir, tmpDir), "actor-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

// addActorModule counts one more actor of the module hash, writing its
// file first if no actor runs it yet, and commits with commit.
func (d *Disk) addActorModule(hash string, module []byte, commit func(also func(*bolt.Tx) error) error) error {
	defer d.moduleLock(hash)()
	path := d.actorModulePath(hash)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if module == nil {
			return fmt.Errorf("a new actor needs its module: %w", ErrInvalid)
		}
		if sum := sha256.Sum256(module); hex.EncodeToString(sum[:]) != hash {
			return fmt.Errorf("module: %w", ErrHashMismatch)
		}
		if err := d.writeFile(path, module); err != nil {
			return fmt.Errorf("module: %w", err)
		}
	} else if err != nil {
		return err
	}
	return commit(func(tx *bolt.Tx) error { return countModule(tx, hash, 1) })
}

// countModule adds delta to the actors that run the module hash, and
// returns ErrNotFound, after the change, if none does.
func countModule(tx *bolt.Tx, hash string, delta int64) error {
	b := tx.Bucket(bucketActorModules)
	var n int64
	if v := b.Get([]byte(hash)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete([]byte(hash))
	}
	return b.Put([]byte(hash), binary.BigEndian.AppendUint64(nil, uint64(n)))
}

func (d *Disk) actorRecord(tx *bolt.Tx, owner, id string) (actorRecord, error) {
	var r actorRecord
	ok, err := getJSON(tx.Bucket(bucketActors), ownerKey(owner, id), &r)
	if err == nil && !ok {
		err = ErrNotFound
	}
	return r, err
}

// Actor returns owner's actor record.
func (d *Disk) Actor(ctx context.Context, owner, id string) (Actor, error) {
	if err := checkActor(owner, id); err != nil {
		return Actor{}, err
	}
	if err := ctx.Err(); err != nil {
		return Actor{}, err
	}
	var r actorRecord
	err := d.db.View(func(tx *bolt.Tx) (err error) {
		r, err = d.actorRecord(tx, owner, id)
		return err
	})
	if err != nil {
		return Actor{}, fmt.Errorf("actor %s: %w", id, err)
	}
	return r.Actor, nil
}

// LoadActor reads owner's actor's module and latest snapshot.
func (d *Disk) LoadActor(ctx context.Context, owner, id string) ([]byte, []byte, error) {
	if err := checkActor(owner, id); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	defer d.actorLock(owner, id)()
	var r actorRecord
	err := d.db.View(func(tx *bolt.Tx) (err error) {
		r, err = d.actorRecord(tx, owner, id)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("actor %s: %w", id, err)
	}
	module, err := os.ReadFile(d.actorModulePath(r.Module))
	if err != nil {
		return nil, nil, fmt.Errorf("actor %s: module: %w", id, err)
	}
	snapshot, err := os.ReadFile(d.actorSnapshotPath(r.Snapshot))
	if err != nil {
		return nil, nil, fmt.Errorf("actor %s: snapshot: %w", id, err)
	}
	return module, snapshot, nil
}

// ListActors lists owner's actors, or every owner's when owner is empty,
// by owner and id.
func (d *Disk) ListActors(ctx context.Context, owner string) ([]Actor, error) {
	var prefix []byte
	if owner != "" {
		if err := validOwner(owner); err != nil {
			return nil, err
		}
		prefix = ownerPrefix(owner)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Actor
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketActors).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r actorRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r.Actor)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("actors of %q: %w", owner, err)
	}
	return out, nil
}

// DeleteActor removes owner's actor, its snapshot, and its module if no
// other actor runs it.
func (d *Disk) DeleteActor(ctx context.Context, owner, id string) error {
	if err := checkActor(owner, id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer d.actorLock(owner, id)()
	var r actorRecord
	if err := d.db.View(func(tx *bolt.Tx) (err error) {
		r, err = d.actorRecord(tx, owner, id)
		return err
	}); err != nil {
		return fmt.Errorf("actor %s: %w", id, err)
	}
	unlock := d.moduleLock(r.Module)
	defer unlock()
	var unused bool
	err := d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketActors).Delete(ownerKey(owner, id)); err != nil {
			return err
		}
		if err := countModule(tx, r.Module, -1); err != nil {
			return err
		}
		unused = tx.Bucket(bucketActorModules).Get([]byte(r.Module)) == nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("actor %s: %w", id, err)
	}
	// A crash before these leaves files no record names: Open removes them.
	os.Remove(d.actorSnapshotPath(r.Snapshot))
	if unused {
		os.Remove(d.actorModulePath(r.Module))
	}
	return nil
}

// sweepActors removes snapshot and module files that no record names:
// those of a put or delete that stopped half-way.
func (d *Disk) sweepActors() error {
	for _, dir := range []string{actorModulesDir, actorSnapshotsDir} {
		if err := os.MkdirAll(filepath.Join(d.dir, dir), 0o700); err != nil {
			return err
		}
	}
	if err := syncDir(filepath.Join(d.dir, "actors")); err != nil {
		return err
	}
	snapshots, modules := map[string]bool{}, map[string]bool{}
	err := d.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketActors).ForEach(func(_, v []byte) error {
			var r actorRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			snapshots[r.Snapshot] = true
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketActorModules).ForEach(func(k, _ []byte) error {
			modules[string(k)] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	for dir, keep := range map[string]map[string]bool{actorSnapshotsDir: snapshots, actorModulesDir: modules} {
		entries, err := os.ReadDir(filepath.Join(d.dir, dir))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if keep[e.Name()] {
				continue
			}
			if err := os.RemoveAll(filepath.Join(d.dir, dir, e.Name())); err != nil {
				return err
			}
			d.recovery.RemovedOrphans++
		}
	}
	return nil
}
