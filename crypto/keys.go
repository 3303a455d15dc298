package crypto

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// IdentityFile is the name of the identity key file in the node's data
// directory.
const IdentityFile = identityFile

// NewIdentity makes an identity that lives in memory only: for a node
// without a data directory, whose receipts then name a key of this run.
func NewIdentity() (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return &Identity{key: key}, nil
}

// Fingerprint is the fingerprint of an Ed25519 public key, as
// Identity.Fingerprint gives the node's own.
func Fingerprint(publicKey ed25519.PublicKey) string {
	sum := sha256.Sum256(publicKey)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// DeriveKey derives a 32-byte secret key for one purpose from the node's
// identity (HKDF-SHA256 over its private seed), so that what the node seals
// for itself, such as actors' snapshots, needs no key file of its own and
// changes with the identity.
func (id *Identity) DeriveKey(purpose string) [32]byte {
	k, err := hkdf.Key(sha256.New, id.key.Seed(), nil, "accelnode "+purpose, 32)
	if err != nil {
		panic("crypto: hkdf of 32 bytes failed: " + err.Error()) // only for lengths HKDF cannot give
	}
	return [32]byte(k)
}
