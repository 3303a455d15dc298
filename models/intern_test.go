package models

import (
	"errors"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

func TestRegistryIntern(t *testing.T) {
	r := NewRegistry()
	data := newRegMLP(1).bytes()
	a, releaseA, err := r.Intern(data)
	if err != nil {
		t.Fatal(err)
	}
	b, releaseB, err := r.Intern(data)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.SHA256 != sha(data) || r.Interned() != 1 {
		t.Fatalf("two interns of one model: %p and %p, sha %s, %d held", a, b, a.SHA256, r.Interned())
	}
	// A nameless model is found neither by name nor by hash.
	for _, key := range []string{a.Name, a.SHA256, "sha256:" + a.SHA256} {
		if _, err := r.Lookup(key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want ErrNotFound", key, err)
		}
	}
	releaseA()
	releaseA() // a second call drops nothing more
	if r.Interned() != 1 {
		t.Fatalf("after one release: %d held, want 1", r.Interned())
	}
	releaseB()
	if r.Interned() != 0 {
		t.Fatalf("after every release: %d held, want 0", r.Interned())
	}

	// Bytes of a named model share its decoding and hold nothing.
	named := mustAdd(t, r, "mlp", data)
	c, releaseC, err := r.Intern(data)
	if err != nil || c != named || r.Interned() != 0 {
		t.Fatalf("intern of a named model's bytes = %p, %v, %d held; want the named %p", c, err, r.Interned(), named)
	}
	releaseC()

	for name, bad := range map[string][]byte{"empty": nil, "not onnx": []byte("GGUF\x03\x00\x00\x00")} {
		if _, _, err := r.Intern(bad); !errors.Is(err, accel.ErrInvalid) {
			t.Errorf("%s: Intern = %v, want ErrInvalid", name, err)
		}
	}
	if r.Interned() != 0 {
		t.Errorf("failed interns hold %d models", r.Interned())
	}
}

func TestRegistryInternHammer(t *testing.T) {
	r := NewRegistry()
	data := newRegMLP(2).bytes()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				m, release, err := r.Intern(data)
				if err != nil || m.SHA256 != sha(data) {
					t.Errorf("Intern = %v, %v", m, err)
					return
				}
				release()
			}
		}()
	}
	wg.Wait()
	if r.Interned() != 0 {
		t.Errorf("%d models held after every release", r.Interned())
	}
}
