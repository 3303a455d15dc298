package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Scopes an API key may hold. A key without a scope is refused the routes
// that need it.
const (
	ScopeInvoke = "invoke" // submit jobs, run models, read its own jobs
	ScopeUpload = "upload" // store modules, blobs and models
	ScopeAdmin  = "admin"  // see every key's jobs, metrics
)

var allScopes = []string{ScopeInvoke, ScopeUpload, ScopeAdmin}

// Key is an API key: a bearer token, of which only the sha256 is stored.
type Key struct {
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"` // of the token
	Scopes []string `json:"scopes"`
	// Quotas, where not zero, replace the server's per-key defaults.
	Quota Quota `json:"quota,omitzero"`
}

// Quota bounds what one key may have at once.
type Quota struct {
	// Jobs is how many jobs the key may have queued or running.
	Jobs int `json:"jobs,omitempty"`
	// Bytes is how many bytes it may store in blobs and open uploads.
	Bytes int64 `json:"bytes,omitempty"`
}

// Keys is the node's set of API keys, kept in a JSON file.
type Keys struct {
	path string
	mu   sync.RWMutex
	keys []Key
}

// tokenPrefix marks accelnode tokens, so that secret scanners can find them.
const tokenPrefix = "acn_"

// LoadKeys reads the key file at path; a missing file is an empty set.
func LoadKeys(path string) (*Keys, error) {
	k := &Keys{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	if err := json.Unmarshal(data, &k.keys); err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	for _, key := range k.keys {
		if err := key.check(); err != nil {
			return nil, fmt.Errorf("api keys %s: %w", path, err)
		}
	}
	return k, nil
}

func (k Key) check() error {
	if k.Name == "" || strings.ContainsAny(k.Name, "/\x00 ") {
		return fmt.Errorf("key name %q: want a non-empty name without spaces or '/'", k.Name)
	}
	if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("key %s: sha256 %q is not 64 hex digits", k.Name, k.SHA256)
	}
	for _, s := range k.Scopes {
		if !slices.Contains(allScopes, s) {
			return fmt.Errorf("key %s: unknown scope %q (want %s)", k.Name, s, strings.Join(allScopes, ", "))
		}
	}
	return nil
}

// Add creates a key with scopes, saves the file and returns the token,
// which is shown this once: only its hash is kept.
func (k *Keys) Add(name string, scopes []string) (string, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	key := Key{Name: name, SHA256: hashToken(token), Scopes: scopes}
	if err := key.check(); err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if slices.ContainsFunc(k.keys, func(o Key) bool { return o.Name == name }) {
		return "", fmt.Errorf("key %s exists already", name)
	}
	keys := append(slices.Clone(k.keys), key)
	if err := writeFileAtomic(k.path, keys); err != nil {
		return "", fmt.Errorf("api keys: %w", err)
	}
	k.keys = keys
	return token, nil
}

// Len is the number of keys.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

// lookup finds the key whose token is token.
func (k *Keys) lookup(token string) (Key, bool) {
	h := hashToken(token)
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.SHA256 == h {
			return key, true
		}
	}
	return Key{}, false
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// localKey acts for every request where the node has no keys: it listens on
// loopback only then, unless its operator said otherwise.
var localKey = Key{Name: "local", Scopes: allScopes}

type keyCtx struct{}

// caller is the key a request acts as.
func caller(ctx context.Context) Key {
	k, _ := ctx.Value(keyCtx{}).(Key)
	return k
}

// authenticate resolves the request's bearer token to a key, or answers 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := localKey
		if s.cfg.Keys.Len() > 0 {
			auth := r.Header.Get("Authorization")
			token, ok := strings.CutPrefix(auth, "Bearer ")
			var found bool
			if ok {
				key, found = s.cfg.Keys.lookup(strings.TrimSpace(token))
			}
			if !found {
				w.Header().Set("WWW-Authenticate", `Bearer realm="accelnode"`)
				writeProblem(w, r, newProblem("unauthorized", "send an API key as Authorization: Bearer TOKEN"))
				return
			}
		}
		if rec, ok := w.(*statusRecorder); ok {
			rec.key = &key
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, key)))
	})
}

// need answers 403 and returns false where the caller lacks scope.
func need(w http.ResponseWriter, r *http.Request, scope string) bool {
	if slices.Contains(caller(r.Context()).Scopes, scope) {
		return true
	}
	writeProblem(w, r, newProblem("forbidden", "this needs an API key with the %s scope", scope))
	return false
}

// writeFileAtomic writes v as JSON to path through a synced temporary file
// and a rename, so that a crash leaves the old file or the new one.
func writeFileAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// List returns the keys, without their hashes.
func (k *Keys) List() []Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]Key, len(k.keys))
	for i, key := range k.keys {
		key.SHA256 = ""
		out[i] = key
	}
	return out
}
