package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

func actorFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestActors(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	module := []byte("\x00asm module bytes")
	a := Actor{ID: NewID(), Owner: "alice", Module: sum(module), Meta: []byte(`{"name":"counter"}`)}
	if err := d.PutActor(ctx, a, module, []byte("snapshot 1")); err != nil {
		t.Fatal(err)
	}
	got, err := d.Actor(ctx, "alice", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Module != a.Module || string(got.Meta) != string(a.Meta) || got.SnapshotSize != 10 || got.Created.IsZero() {
		t.Errorf("record %+v", got)
	}
	// Updates replace the snapshot and keep the module.
	a.Meta = []byte(`{"name":"counter","calls":1}`)
	if err := d.PutActor(ctx, a, nil, []byte("snapshot 2, longer")); err != nil {
		t.Fatal(err)
	}
	if err := d.PutActor(ctx, a, nil, nil); err != nil { // the record alone
		t.Fatal(err)
	}
	mod, snap, err := d.LoadActor(ctx, "alice", a.ID)
	if err != nil || !bytes.Equal(mod, module) || string(snap) != "snapshot 2, longer" {
		t.Fatalf("load: %q, %q, %v", mod, snap, err)
	}
	if n := len(actorFiles(t, dir, actorSnapshotsDir)); n != 1 {
		t.Errorf("%d snapshot files, want 1: the old one goes", n)
	}
	again, _ := d.Actor(ctx, "alice", a.ID)
	if !again.Created.Equal(got.Created) || string(again.Meta) != string(a.Meta) {
		t.Errorf("after updates: %+v", again)
	}

	// A second actor of the same module shares its file; another owner
	// sees neither.
	b := Actor{ID: NewID(), Owner: "alice", Module: a.Module}
	if err := d.PutActor(ctx, b, nil, []byte("b")); err != nil {
		t.Fatalf("second actor of a stored module, without its bytes: %v", err)
	}
	if n := len(actorFiles(t, dir, actorModulesDir)); n != 1 {
		t.Errorf("%d module files, want 1", n)
	}
	for _, f := range []func() error{
		func() error { _, err := d.Actor(ctx, "bob", a.ID); return err },
		func() error { _, _, err := d.LoadActor(ctx, "bob", a.ID); return err },
		func() error { return d.DeleteActor(ctx, "bob", a.ID) },
		func() error { return d.PutActor(ctx, Actor{ID: a.ID, Owner: "bob", Module: a.Module}, nil, nil) },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalid) {
			t.Errorf("another owner: err = %v, want not found", err)
		}
	}
	if list, _ := d.ListActors(ctx, "bob"); len(list) != 0 {
		t.Errorf("bob lists %d actors", len(list))
	}
	list, err := d.ListActors(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("alice lists %d actors, %v", len(list), err)
	}
	c := Actor{ID: NewID(), Owner: "bob", Module: sum([]byte("other"))}
	if err := d.PutActor(ctx, c, []byte("other"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if all, _ := d.ListActors(ctx, ""); len(all) != 3 {
		t.Errorf("every owner's: %d actors, want 3", len(all))
	}

	// Deleting the last actor of a module removes the module.
	if err := d.DeleteActor(ctx, "alice", a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Actor(ctx, "alice", a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted actor: %v", err)
	}
	if !slices.Contains(actorFiles(t, dir, actorModulesDir), a.Module) {
		t.Error("module of a live actor removed")
	}
	if err := d.DeleteActor(ctx, "alice", b.ID); err != nil {
		t.Fatal(err)
	}
	if got := actorFiles(t, dir, actorModulesDir); len(got) != 1 || got[0] != c.Module {
		t.Errorf("modules %v, want only bob's", got)
	}
	if got := actorFiles(t, dir, actorSnapshotsDir); len(got) != 1 {
		t.Errorf("snapshots %v, want only bob's", got)
	}
}

func TestActorRefusals(t *testing.T) {
	d := open(t, t.TempDir())
	module := []byte("module")
	good := Actor{ID: NewID(), Owner: "alice", Module: sum(module)}
	if err := d.PutActor(ctx, good, module, []byte("s")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		a        Actor
		module   []byte
		snapshot []byte
		want     error
	}{
		{"bad id", Actor{ID: "nope", Owner: "alice", Module: sum(module)}, module, []byte("s"), ErrInvalid},
		{"no owner", Actor{ID: NewID(), Module: sum(module)}, module, []byte("s"), ErrInvalid},
		{"bad hash", Actor{ID: NewID(), Owner: "alice", Module: "abc"}, module, []byte("s"), ErrInvalid},
		{"new without snapshot", Actor{ID: NewID(), Owner: "alice", Module: sum(module)}, module, nil, ErrInvalid},
		{"new without module", Actor{ID: NewID(), Owner: "alice", Module: sum([]byte("unknown"))}, nil, []byte("s"), ErrInvalid},
		{"module of another hash", Actor{ID: NewID(), Owner: "alice", Module: sum([]byte("unknown"))}, module, []byte("s"), ErrHashMismatch},
		{"another module", Actor{ID: good.ID, Owner: "alice", Module: sum([]byte("x"))}, nil, []byte("s"), ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.PutActor(ctx, tt.a, tt.module, tt.snapshot); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if all, _ := d.ListActors(ctx, ""); len(all) != 1 {
		t.Errorf("%d actors after refusals, want 1", len(all))
	}
}

// TestActorsAfterRestart: files a put or delete left half-way go at Open,
// and the records stay.
func TestActorsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	module := []byte("module")
	a := Actor{ID: NewID(), Owner: "alice", Module: sum(module)}
	if err := d.PutActor(ctx, a, module, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	for path, data := range map[string]string{
		filepath.Join(actorSnapshotsDir, snapshotKey("alice", a.ID)+".9"): "a snapshot written, its record never moved",
		filepath.Join(actorModulesDir, sum([]byte("lost"))):               "lost",
	} {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d = open(t, dir)
	if n := d.Recovered().RemovedOrphans; n != 2 {
		t.Errorf("removed %d orphans, want 2", n)
	}
	if _, snap, err := d.LoadActor(ctx, "alice", a.ID); err != nil || string(snap) != "kept" {
		t.Errorf("after restart: %q, %v", snap, err)
	}
}

// Puts of many actors of one module, and deletes, at once: the module
// file is there exactly while an actor runs it.
func TestActorsConcurrent(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	module := []byte("shared module")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				a := Actor{ID: NewID(), Owner: []string{"alice", "bob"}[g%2], Module: sum(module)}
				if err := d.PutActor(ctx, a, module, []byte("s")); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := d.DeleteActor(ctx, a.Owner, a.ID); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	all, _ := d.ListActors(ctx, "")
	if len(all) != 40 {
		t.Fatalf("%d actors, want 40", len(all))
	}
	for _, a := range all {
		if _, _, err := d.LoadActor(ctx, a.Owner, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteActor(ctx, a.Owner, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := actorFiles(t, dir, actorModulesDir); len(got) != 0 {
		t.Errorf("modules left: %v", got)
	}
}
