package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// identityFile is the key file's name inside the identity directory.
const identityFile = "node.key"

// maxKeyFile bounds what is read from the key file; a PKCS#8 Ed25519 PEM is
// about 120 bytes.
const maxKeyFile = 64 << 10

// Identity is the node's Ed25519 key pair.
type Identity struct {
	key ed25519.PrivateKey
}

// LoadOrCreateIdentity loads dir/node.key, or makes it if it does not exist
// and reports created. A file that is there but unusable is an error and is
// left as it is: the node stops rather than change identity.
func LoadOrCreateIdentity(dir string) (*Identity, bool, error) {
	path := filepath.Join(dir, identityFile)
	id, err := loadIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("identity directory: %w", err)
	}
	id, err = createIdentity(dir, path)
	if errors.Is(err, fs.ErrExist) { // another start made it first
		id, err = loadIdentity(path)
		return id, false, err
	}
	return id, err == nil, err
}

// PublicKey returns the node's public key.
func (id *Identity) PublicKey() ed25519.PublicKey {
	return id.key.Public().(ed25519.PublicKey)
}

// Fingerprint returns "SHA256:" and the unpadded standard base64 of the
// SHA-256 of the 32-byte public key, the form OpenSSH prints for its keys.
func (id *Identity) Fingerprint() string {
	sum := sha256.Sum256(id.PublicKey())
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// Sign returns the Ed25519 signature of msg.
func (id *Identity) Sign(msg []byte) []byte {
	return ed25519.Sign(id.key, msg)
}

// loadIdentity reads and parses path. Every error names the file; a missing
// file wraps fs.ErrNotExist.
func loadIdentity(path string) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err) // *PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("identity key %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	// Windows has no such mode bits; its ACLs are the user's to set.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("identity key %s: mode %04o gives group or others access; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity key %s: %v; the file was left as it is", path, err)
	}
	return &Identity{key: key}, nil
}

func parseKey(data []byte) (ed25519.PrivateKey, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	// pem.Decode skips text around the block; a key file has none.
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		return nil, errors.New("not PEM")
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("not PEM")
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, errors.New("data after the PEM block")
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("PEM type %q, want \"PRIVATE KEY\"", block.Type)
	case len(block.Headers) != 0:
		return nil, errors.New("PEM headers present (encrypted keys are not supported)")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not PKCS#8: %v", err)
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T, want an Ed25519 key", key)
	}
	return ed, nil
}

// createIdentity writes a new key to a temporary file and links it to path,
// which fails with fs.ErrExist rather than replace a key another start wrote.
// A crash leaves either no key file or a complete one.
func createIdentity(dir, path string) (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)

	tmp, err := os.CreateTemp(dir, "."+identityFile+".tmp-*") // 0600, O_EXCL
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = writeSync(tmp, data)
	clear(data)
	if err != nil {
		return nil, fmt.Errorf("identity key %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("identity key: %w", err)
	}
	os.Remove(tmp.Name()) // before syncDir, so that both entries are durable
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("identity key %s: %w", path, err)
	}
	return &Identity{key: key}, nil
}

func writeSync(f *os.File, data []byte) error {
	err := f.Chmod(0o600) // CreateTemp's mode already; said again for clarity
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes the new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
