package crypto_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/crypto"
)

func TestIdentityCreateAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "id") // made on demand
	id, created, err := crypto.LoadOrCreateIdentity(dir)
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want only node.key", len(entries))
	}

	again, created, err := crypto.LoadOrCreateIdentity(dir)
	if err != nil || created {
		t.Fatalf("second start: created %v, %v", created, err)
	}
	if !again.PublicKey().Equal(id.PublicKey()) {
		t.Fatal("second start loaded another key")
	}

	msg := []byte("receipt bytes")
	if !ed25519.Verify(again.PublicKey(), msg, id.Sign(msg)) {
		t.Fatal("signature does not verify")
	}
	sum := sha256.Sum256(id.PublicKey())
	if want := "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]); id.Fingerprint() != want || len(want) != 50 {
		t.Fatalf("Fingerprint %q, want %q", id.Fingerprint(), want)
	}
}

// Parallel first starts agree on one key, and exactly one of them made it.
func TestIdentityCreateRace(t *testing.T) {
	dir := t.TempDir()
	const P = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		keys    = map[string]bool{}
		creates int
	)
	for range P {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, created, err := crypto.LoadOrCreateIdentity(dir)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			keys[string(id.PublicKey())] = true
			if created {
				creates++
			}
		}()
	}
	wg.Wait()
	if len(keys) != 1 || creates != 1 {
		t.Fatalf("%d keys, %d creations; want 1 and 1", len(keys), creates)
	}
}

func TestIdentityRefusesBadFiles(t *testing.T) {
	good := func() []byte {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	edDER, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32)))

	tests := []struct {
		name string
		data []byte
		mode os.FileMode
		want string
	}{
		{"empty", nil, 0o600, "not PEM"},
		{"not PEM", []byte("hello\n"), 0o600, "not PEM"},
		{"text before the block", append([]byte("junk\n"), good()...), 0o600, "not PEM"},
		{"trailing garbage", append(good(), "junk\n"...), 0o600, "data after the PEM block"},
		{"two keys", append(good(), good()...), 0o600, "data after the PEM block"},
		{"truncated", good()[:40], 0o600, "not PEM"},
		{"wrong type", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: edDER}), 0o600, `PEM type "EC PRIVATE KEY"`},
		{"not Ed25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600, "want an Ed25519 key"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER[:20]}), 0o600, "not PKCS#8"},
		{"group readable", good(), 0o640, "mode 0640 gives group or others access; run chmod 600"},
		{"world readable", good(), 0o644, "mode 0644"},
		{"other writable", good(), 0o602, "mode 0602"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node.key")
			if err := os.WriteFile(path, tt.data, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			_, _, err := crypto.LoadOrCreateIdentity(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s and saying %q", err, path, tt.want)
			}
			if got, _ := os.ReadFile(path); string(got) != string(tt.data) {
				t.Fatal("the key file was changed")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("dir holds %d entries, want only node.key", len(entries))
			}
		})
	}
}
