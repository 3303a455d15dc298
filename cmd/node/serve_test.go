package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/crypto"
)

// syncBuffer is a log that a test reads while the server writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingURL = regexp.MustCompile(`"url":"(http://[0-9.:]+)"`)

// TestServe starts `accelnode serve` on a loopback port, speaks HTTP/2
// without TLS (h2c) and HTTP/1.1 to it, and stops it as SIGTERM would.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--backend", "ref"}, strings.NewReader(""), &log, &log)
	}()
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := servingURL.FindStringSubmatch(log.String()); m != nil {
			url = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, log.String())
		default:
		}
	}
	if url == "" {
		t.Fatalf("serve did not say where it listens:\n%s", log.String())
	}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for _, tc := range []struct {
		name   string
		client *http.Client
		major  int
	}{{"h2c", &http.Client{Transport: h2c}, 2}, {"http/1.1", http.DefaultClient, 1}} {
		resp, err := tc.client.Get(url + "/readyz")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tc.major {
			t.Errorf("%s: %s over %s", tc.name, resp.Status, resp.Proto)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(log.String(), `"msg":"stopped"`) {
		t.Errorf("no stop in the log:\n%s", log.String())
	}
}

// TestServeIdentity: the first start makes the identity key, mode 0600,
// and logs its fingerprint; a corrupt key file stops the start with an
// error naming it, and is left as it was.
func TestServeIdentity(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--backend", "ref"}, strings.NewReader(""), &log, &log)
	}()
	for deadline := time.Now().Add(30 * time.Second); !servingURL.MatchString(log.String()) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	key := filepath.Join(dir, crypto.IdentityFile)
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity key %s: %v, mode %v; want mode 0600", key, err, st)
	}
	id, _, err := crypto.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `"fingerprint":"`+id.Fingerprint()+`"`) {
		t.Errorf("serve did not log the fingerprint %s:\n%s", id.Fingerprint(), log.String())
	}

	corrupt := []byte("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
	if err := os.WriteFile(key, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err = run(context.Background(), []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--backend", "ref"}, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("serve with a corrupt key file: %v, want an error naming %s", err, key)
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(after, corrupt) {
		t.Errorf("the corrupt key file was changed")
	}
}

func TestCheckExposure(t *testing.T) {
	for _, tc := range []struct {
		addr                   string
		tls, keys, allowPublic bool
		ok                     bool
	}{
		{"127.0.0.1:8080", false, false, false, true},
		{"[::1]:8080", false, false, false, true},
		{"localhost:8080", false, false, false, true},
		{"0.0.0.0:8080", false, false, false, false},
		{":8080", false, false, false, false},
		{"0.0.0.0:8443", true, false, false, false},
		{"0.0.0.0:8443", false, true, false, false},
		{"0.0.0.0:8443", true, true, false, true},
		{"0.0.0.0:8080", false, false, true, true},
		{"no-port", false, false, true, false},
	} {
		if err := checkExposure(tc.addr, tc.tls, tc.keys, tc.allowPublic); (err == nil) != tc.ok {
			t.Errorf("checkExposure(%q, tls %v, keys %v, allow %v) = %v, want ok %v", tc.addr, tc.tls, tc.keys, tc.allowPublic, err, tc.ok)
		}
	}
}
