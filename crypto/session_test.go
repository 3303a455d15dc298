package crypto_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/accelnode/accelnode/crypto"
)

// clock is a settable Now for SessionsConfig.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// client is the browser's side of a session: plain box.Seal and box.Open,
// as tweetnacl's nacl.box does.
type client struct {
	pub, priv *[32]byte
	nodePub   [32]byte
}

func newClient(t testing.TB) *client {
	t.Helper()
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &client{pub: pub, priv: priv}
}

func (c *client) seal(t testing.TB, msg []byte) []byte {
	t.Helper()
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		t.Fatal(err)
	}
	return box.Seal(nonce[:], msg, &nonce, &c.nodePub, c.priv)
}

func (c *client) open(t testing.TB, sealed []byte) []byte {
	t.Helper()
	var nonce [24]byte
	copy(nonce[:], sealed)
	msg, ok := box.Open(nil, sealed[24:], &nonce, &c.nodePub, c.priv)
	if !ok {
		t.Fatal("client could not open the node's message")
	}
	return msg
}

type fixture struct {
	clock *clock
	s     *crypto.Sessions
	c     *client
	sess  crypto.Session
}

func newFixture(t testing.TB, cfg crypto.SessionsConfig) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Unix(1_700_000_000, 0)}, c: newClient(t)}
	cfg.Now = f.clock.Now
	f.s = crypto.NewSessions(cfg)
	t.Cleanup(f.s.Close)
	var err error
	f.sess, err = f.s.Create("key-a", *f.c.pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.c.nodePub = f.sess.NodePublicKey
	return f
}

func TestSessionRoundTrip(t *testing.T) {
	f := newFixture(t, crypto.SessionsConfig{})
	if len(f.sess.ID) != 32 || f.sess.Owner != "key-a" || !f.sess.ExpiresAt.Equal(f.clock.Now().Add(300*time.Second)) {
		t.Fatalf("session %+v", f.sess)
	}
	for _, msg := range [][]byte{nil, []byte("infer please"), bytes.Repeat([]byte{0xab}, 1<<16)} {
		got, err := f.s.Open("key-a", f.sess.ID, f.c.seal(t, msg))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Open(%d bytes) = %d bytes, %v", len(msg), len(got), err)
		}
		sealed, err := f.s.Seal("key-a", f.sess.ID, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.c.open(t, sealed); !bytes.Equal(got, msg) {
			t.Fatalf("client opened %d bytes, want %d", len(got), len(msg))
		}
	}
	if got, err := f.s.Lookup("key-a", f.sess.ID); err != nil || got != f.sess {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
}

func TestSessionErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture) error
		want error
	}{
		{"replay", func(t *testing.T, f *fixture) error {
			m := f.c.seal(t, []byte("once"))
			if _, err := f.s.Open("key-a", f.sess.ID, m); err != nil {
				t.Fatal(err)
			}
			_, err := f.s.Open("key-a", f.sess.ID, m)
			return err
		}, crypto.ErrReplay},
		{"node response fed back as request", func(t *testing.T, f *fixture) error {
			m, err := f.s.Seal("key-a", f.sess.ID, []byte("result"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.s.Open("key-a", f.sess.ID, m)
			return err
		}, crypto.ErrReplay},
		{"too short", func(t *testing.T, f *fixture) error {
			_, err := f.s.Open("key-a", f.sess.ID, make([]byte, 24+box.Overhead-1))
			return err
		}, crypto.ErrAuth},
		{"sealed for another node key", func(t *testing.T, f *fixture) error {
			other := newClient(t)
			other.nodePub = *other.pub
			_, err := f.s.Open("key-a", f.sess.ID, other.seal(t, []byte("x")))
			return err
		}, crypto.ErrAuth},
		{"wrong id", func(t *testing.T, f *fixture) error {
			_, err := f.s.Open("key-a", "00000000000000000000000000000000", f.c.seal(t, nil))
			return err
		}, crypto.ErrUnknownSession},
		{"other owner opens", func(t *testing.T, f *fixture) error {
			_, err := f.s.Open("key-b", f.sess.ID, f.c.seal(t, nil))
			return err
		}, crypto.ErrUnknownSession},
		{"other owner seals", func(t *testing.T, f *fixture) error {
			_, err := f.s.Seal("key-b", f.sess.ID, nil)
			return err
		}, crypto.ErrUnknownSession},
		{"other owner looks up", func(t *testing.T, f *fixture) error {
			_, err := f.s.Lookup("key-b", f.sess.ID)
			return err
		}, crypto.ErrUnknownSession},
		{"other owner ends", func(t *testing.T, f *fixture) error {
			if err := f.s.End("key-b", f.sess.ID); err != crypto.ErrUnknownSession {
				t.Fatalf("End by another owner: %v", err)
			}
			_, err := f.s.Lookup("key-a", f.sess.ID) // still there
			return err
		}, nil},
		{"ended", func(t *testing.T, f *fixture) error {
			if err := f.s.End("key-a", f.sess.ID); err != nil {
				t.Fatal(err)
			}
			_, err := f.s.Seal("key-a", f.sess.ID, nil)
			return err
		}, crypto.ErrUnknownSession},
		{"expired open", func(t *testing.T, f *fixture) error {
			m := f.c.seal(t, nil)
			f.clock.Add(300 * time.Second)
			_, err := f.s.Open("key-a", f.sess.ID, m)
			return err
		}, crypto.ErrExpired},
		{"expired seal", func(t *testing.T, f *fixture) error {
			f.clock.Add(301 * time.Second)
			_, err := f.s.Seal("key-a", f.sess.ID, nil)
			return err
		}, crypto.ErrExpired},
		{"expired lookup, then gone", func(t *testing.T, f *fixture) error {
			f.clock.Add(time.Hour)
			if _, err := f.s.Lookup("key-a", f.sess.ID); err != crypto.ErrExpired {
				t.Fatalf("first Lookup: %v", err)
			}
			_, err := f.s.Lookup("key-a", f.sess.ID)
			return err
		}, crypto.ErrUnknownSession},
		{"swept", func(t *testing.T, f *fixture) error {
			f.clock.Add(300 * time.Second)
			f.s.Sweep()
			_, err := f.s.Lookup("key-a", f.sess.ID)
			return err
		}, crypto.ErrUnknownSession},
		{"sweep keeps live ones", func(t *testing.T, f *fixture) error {
			f.clock.Add(299 * time.Second)
			f.s.Sweep()
			_, err := f.s.Lookup("key-a", f.sess.ID)
			return err
		}, nil},
		{"closed", func(t *testing.T, f *fixture) error {
			f.s.Close()
			if _, err := f.s.Lookup("key-a", f.sess.ID); err != crypto.ErrUnknownSession {
				t.Fatalf("Lookup after Close: %v", err)
			}
			_, err := f.s.Create("key-a", *f.c.pub, 0)
			return err
		}, crypto.ErrInvalid},
		{"ttl 24h", func(t *testing.T, f *fixture) error {
			_, err := f.s.Create("key-a", *f.c.pub, 24*time.Hour)
			return err
		}, nil},
		{"ttl above 24h", func(t *testing.T, f *fixture) error {
			_, err := f.s.Create("key-a", *f.c.pub, 24*time.Hour+time.Second)
			return err
		}, crypto.ErrInvalid},
		{"ttl negative", func(t *testing.T, f *fixture) error {
			_, err := f.s.Create("key-a", *f.c.pub, -time.Second)
			return err
		}, crypto.ErrInvalid},
		{"zero client key", func(t *testing.T, f *fixture) error {
			_, err := f.s.Create("key-a", [32]byte{}, 0)
			return err
		}, crypto.ErrInvalid},
		{"low-order client key", func(t *testing.T, f *fixture) error {
			_, err := f.s.Create("key-a", [32]byte{1}, 0) // u = 1 has order 4
			return err
		}, crypto.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, crypto.SessionsConfig{})
			if err := tt.run(t, f); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// A forgery must not spend the nonce of the genuine message it copies.
func TestSessionForgeryKeepsNonce(t *testing.T) {
	f := newFixture(t, crypto.SessionsConfig{})
	genuine := f.c.seal(t, []byte("real"))
	forged := bytes.Clone(genuine)
	forged[len(forged)-1] ^= 1
	if _, err := f.s.Open("key-a", f.sess.ID, forged); err != crypto.ErrAuth {
		t.Fatalf("forged: %v", err)
	}
	if got, err := f.s.Open("key-a", f.sess.ID, genuine); err != nil || string(got) != "real" {
		t.Fatalf("genuine after forgery: %q, %v", got, err)
	}
}

// Flipping any bit of a sealed message makes Open fail.
func TestSessionBitFlip(t *testing.T) {
	f := newFixture(t, crypto.SessionsConfig{})
	sealed := f.c.seal(t, []byte(`{"module":"abc","stdin":"hello"}`))
	for bit := range len(sealed) * 8 {
		m := bytes.Clone(sealed)
		m[bit/8] ^= 1 << (bit % 8)
		if got, err := f.s.Open("key-a", f.sess.ID, m); err == nil {
			t.Fatalf("bit %d flipped: opened %q", bit, got)
		}
	}
	if _, err := f.s.Open("key-a", f.sess.ID, sealed); err != nil {
		t.Fatalf("original after flips: %v", err)
	}
}

func TestSessionLimits(t *testing.T) {
	t.Run("sessions", func(t *testing.T) {
		f := newFixture(t, crypto.SessionsConfig{MaxSessions: 2})
		if _, err := f.s.Create("key-b", *f.c.pub, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Create("key-b", *f.c.pub, 0); !errors.Is(err, crypto.ErrTooMany) {
			t.Fatalf("third session: %v", err)
		}
		f.clock.Add(300 * time.Second) // the first expires and makes room
		if _, err := f.s.Create("key-b", *f.c.pub, 0); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
	})
	t.Run("messages", func(t *testing.T) {
		f := newFixture(t, crypto.SessionsConfig{MaxMessages: 3})
		for i := range 3 {
			var err error
			if i%2 == 0 {
				_, err = f.s.Open("key-a", f.sess.ID, f.c.seal(t, nil))
			} else {
				_, err = f.s.Seal("key-a", f.sess.ID, nil)
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if _, err := f.s.Open("key-a", f.sess.ID, f.c.seal(t, nil)); !errors.Is(err, crypto.ErrTooMany) {
			t.Fatalf("fourth Open: %v", err)
		}
		if _, err := f.s.Seal("key-a", f.sess.ID, nil); !errors.Is(err, crypto.ErrTooMany) {
			t.Fatalf("fourth Seal: %v", err)
		}
	})
}

func TestSessionWipe(t *testing.T) {
	tests := []struct {
		name string
		end  func(f *fixture)
	}{
		{"End", func(f *fixture) { f.s.End("key-a", f.sess.ID) }},
		{"Sweep", func(f *fixture) { f.clock.Add(time.Hour); f.s.Sweep() }},
		{"expired on Open", func(f *fixture) { f.clock.Add(time.Hour); f.s.Open("key-a", f.sess.ID, nil) }},
		{"Close", func(f *fixture) { f.s.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, crypto.SessionsConfig{})
			key := f.s.KeyOf(f.sess.ID)
			if *key == ([32]byte{}) {
				t.Fatal("live key is zero")
			}
			tt.end(f)
			if *key != ([32]byte{}) {
				t.Fatalf("key not wiped: %x", *key)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestSessionRandFailure(t *testing.T) {
	s := crypto.NewSessions(crypto.SessionsConfig{Rand: failingReader{}})
	if _, err := s.Create("key-a", [32]byte{9}, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Create with failing Rand: %v", err)
	}
}

// Hammer: clients talk in parallel while others end sessions and sweep.
func TestSessionConcurrent(t *testing.T) {
	f := newFixture(t, crypto.SessionsConfig{})
	const P, N = 8, 50
	var wg sync.WaitGroup
	for p := range P {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(t)
			owner := fmt.Sprintf("key-%d", p)
			sess, err := f.s.Create(owner, *c.pub, 0)
			if err != nil {
				t.Error(err)
				return
			}
			c.nodePub = sess.NodePublicKey
			for i := range N {
				msg := []byte(fmt.Sprintf("%d/%d", p, i))
				// The shared session sees Open and Seal from every goroutine.
				if _, err := f.s.Open("key-a", f.sess.ID, f.c.seal(t, msg)); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.s.Seal("key-a", f.sess.ID, msg); err != nil {
					t.Error(err)
					return
				}
				got, err := f.s.Open(owner, sess.ID, c.seal(t, msg))
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("own session: %q, %v", got, err)
					return
				}
				f.s.Sweep()
			}
			if err := f.s.End(owner, sess.ID); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// Open and Seal racing End and Close: each call either works or reports
// the session gone, never touches a wiped key.
func TestSessionEndRace(t *testing.T) {
	for range 20 {
		f := newFixture(t, crypto.SessionsConfig{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					_, err := f.s.Open("key-a", f.sess.ID, f.c.seal(t, []byte("x")))
					if err != nil && err != crypto.ErrUnknownSession {
						t.Error(err)
					}
					_, err = f.s.Seal("key-a", f.sess.ID, []byte("y"))
					if err != nil && err != crypto.ErrUnknownSession {
						t.Error(err)
					}
				}
			}()
		}
		f.s.End("key-a", f.sess.ID)
		f.s.Close()
		wg.Wait()
	}
}
