// Package servertest starts a real server for tests: a node, a store on
// disk and a loopback listener, torn down when the test ends.
package servertest

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/store"
)

// Options configure Start. Zero values give a node on ref with the server's
// default limits, in a fresh directory.
type Options struct {
	Backend string
	// Dir is the data directory; a server started again on it finds what
	// the last one kept.
	Dir    string
	Limits server.Limits
	// Keys, where set, adds API keys before the server starts.
	Keys func(*server.Keys)
	// Mode is the node's determinism mode (strict where not set).
	Mode accel.Mode
	// SessionTTL is the encrypted sessions' lifetime; 0 is the default.
	SessionTTL time.Duration
	// WebData and WebModules are the web page's MNIST directory and
	// guests (server.Config).
	WebData    string
	WebModules map[string][]byte
}

// Server is a running server.
type Server struct {
	*server.Server
	URL   string
	Dir   string
	Store *store.Disk
	Node  *node.Node

	http *httptest.Server
	once sync.Once
}

// Start starts a server; it stops when tb ends, or at Stop.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.Backend == "" {
		o.Backend = "ref"
	}
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	st, err := store.Open(filepath.Join(o.Dir, "store"), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	identity, _, err := crypto.LoadOrCreateIdentity(o.Dir)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{Backend: o.Backend, Mode: o.Mode, CacheDir: guesttest.CacheDir(),
		Actors: st, SnapshotKey: identity.DeriveKey(server.SnapshotPurpose)})
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	keys, err := server.LoadKeys(filepath.Join(o.Dir, "keys.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if o.Keys != nil {
		o.Keys(keys)
	}
	srv, err := server.New(server.Config{Node: n, Store: st, Keys: keys, Catalog: filepath.Join(o.Dir, "models.json"),
		Limits: o.Limits, Version: "test", Identity: identity, SessionTTL: o.SessionTTL,
		WebData: o.WebData, WebModules: o.WebModules})
	if err != nil {
		n.Close()
		st.Close()
		tb.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	s := &Server{Server: srv, URL: hs.URL, Dir: o.Dir, Store: st, Node: n, http: hs}
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down, giving running jobs a few seconds.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		s.Node.Close()
		s.Store.Close()
	})
}
