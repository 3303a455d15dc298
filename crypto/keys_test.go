package crypto_test

import (
	"testing"

	"github.com/accelnode/accelnode/crypto"
)

// TestDeriveKey: a derived key is the identity's and the purpose's alone.
func TestDeriveKey(t *testing.T) {
	dir := t.TempDir()
	a, _, err := crypto.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := crypto.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := crypto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if a.DeriveKey("snapshot") != again.DeriveKey("snapshot") {
		t.Error("the same identity derived two keys for one purpose")
	}
	if a.DeriveKey("snapshot") == a.DeriveKey("other") || a.DeriveKey("snapshot") == other.DeriveKey("snapshot") {
		t.Error("a derived key repeats across purposes or identities")
	}
	if crypto.Fingerprint(a.PublicKey()) != a.Fingerprint() || a.Fingerprint() == other.Fingerprint() {
		t.Errorf("fingerprints %s, %s", crypto.Fingerprint(a.PublicKey()), other.Fingerprint())
	}
}
