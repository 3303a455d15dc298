package crypto

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// Errors returned by Sessions; test with errors.Is.
var (
	// ErrUnknownSession is also returned for another owner's session, so
	// that a session's existence does not leak.
	ErrUnknownSession = errors.New("unknown session")
	ErrExpired        = errors.New("session expired")
	ErrReplay         = errors.New("replayed nonce")
	// ErrAuth is returned for messages that fail authentication, including
	// those too short to hold a nonce and a tag.
	ErrAuth    = errors.New("message failed authentication")
	ErrTooMany = errors.New("too many")
	ErrInvalid = errors.New("invalid")
)

const (
	nonceSize = 24
	// maxTTL bounds a session's lifetime, and so how long its key lives.
	maxTTL = 24 * time.Hour
)

// SessionsConfig configures NewSessions. Zero fields take their defaults.
type SessionsConfig struct {
	TTL         time.Duration    // default 300 s
	MaxSessions int              // default 10000; Create beyond it is ErrTooMany
	MaxMessages int              // per session, both directions, default 100000; bounds the replay memory
	Now         func() time.Time // default time.Now
	Rand        io.Reader        // default crypto/rand.Reader
}

// Session describes one live session. It holds no secrets.
type Session struct {
	ID            string // 16 random bytes, lowercase hex
	Owner         string // the API key that made it
	NodePublicKey [32]byte
	ExpiresAt     time.Time
}

// Sessions holds the node's live sessions. Safe for concurrent use.
type Sessions struct {
	cfg SessionsConfig

	mu     sync.Mutex // guards m and closed; taken before any session's mu
	m      map[string]*session
	closed bool
}

type session struct {
	info Session

	mu     sync.Mutex // guards the fields below
	key    [32]byte   // box shared key; zero once ended
	nonces map[[nonceSize]byte]struct{}
	ended  bool
}

// NewSessions returns an empty set of sessions.
func NewSessions(cfg SessionsConfig) *Sessions {
	if cfg.TTL <= 0 {
		cfg.TTL = 300 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Sessions{cfg: cfg, m: make(map[string]*session)}
}

// Create starts a session for owner with the client's X25519 public key.
// A ttl of 0 takes the configured default; up to 24h is allowed.
func (s *Sessions) Create(owner string, clientPublicKey [32]byte, ttl time.Duration) (Session, error) {
	switch {
	case ttl == 0:
		ttl = s.cfg.TTL
	case ttl < 0 || ttl > maxTTL:
		return Session{}, fmt.Errorf("%w: session ttl %v outside (0, %v]", ErrInvalid, ttl, maxTTL)
	}
	var rawID [16]byte
	if _, err := io.ReadFull(s.cfg.Rand, rawID[:]); err != nil {
		return Session{}, fmt.Errorf("session id: %w", err)
	}
	pub, priv, err := box.GenerateKey(s.cfg.Rand)
	if err != nil {
		return Session{}, fmt.Errorf("session key: %w", err)
	}
	ss := &session{nonces: make(map[[nonceSize]byte]struct{})}
	box.Precompute(&ss.key, &clientPublicKey, priv)
	clear(priv[:])
	if subtle.ConstantTimeCompare(ss.key[:], lowOrderKey[:]) == 1 {
		ss.wipe()
		return Session{}, fmt.Errorf("%w: client public key is a low-order point", ErrInvalid)
	}
	ss.info = Session{
		ID:            hex.EncodeToString(rawID[:]),
		Owner:         owner,
		NodePublicKey: *pub,
		ExpiresAt:     s.cfg.Now().Add(ttl),
	}

	if err := s.add(ss); err != nil {
		ss.wipe()
		return Session{}, err
	}
	return ss.info, nil
}

// lowOrderKey is the shared key of every low-order client public key: the
// X25519 result is then zero whatever the node's key, so an onlooker could
// compute it.
var lowOrderKey = func() (k [32]byte) {
	box.Precompute(&k, &[32]byte{}, &[32]byte{1})
	return k
}()

func (s *Sessions) add(ss *session) error {
	s.mu.Lock()
	var dropped []*session
	defer func() {
		s.mu.Unlock()
		for _, d := range dropped {
			d.wipe()
		}
	}()
	if s.closed {
		return fmt.Errorf("%w: sessions closed", ErrInvalid)
	}
	if len(s.m) >= s.cfg.MaxSessions {
		dropped = s.dropExpiredLocked()
	}
	if len(s.m) >= s.cfg.MaxSessions {
		return fmt.Errorf("%w: sessions (limit %d)", ErrTooMany, s.cfg.MaxSessions)
	}
	if s.m[ss.info.ID] != nil { // 128 random bits; only a broken Rand gets here
		return fmt.Errorf("%w: session id %s already in use", ErrInvalid, ss.info.ID)
	}
	s.m[ss.info.ID] = ss
	return nil
}

// Open authenticates and decrypts sealed, a 24-byte nonce followed by the
// box ciphertext. Each nonce opens at most once per session, and never one
// the node used in Seal.
func (s *Sessions) Open(owner, id string, sealed []byte) ([]byte, error) {
	ss, err := s.get(owner, id)
	if err != nil {
		return nil, err
	}
	if len(sealed) < nonceSize+box.Overhead {
		return nil, ErrAuth
	}
	var nonce [nonceSize]byte
	copy(nonce[:], sealed)

	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err := ss.usableLocked(s.cfg.MaxMessages); err != nil {
		return nil, err
	}
	if _, seen := ss.nonces[nonce]; seen {
		return nil, ErrReplay
	}
	plain, ok := box.OpenAfterPrecomputation(nil, sealed[nonceSize:], &nonce, &ss.key)
	if !ok {
		// The nonce is not recorded: only its holder of the key may spend it.
		return nil, ErrAuth
	}
	ss.nonces[nonce] = struct{}{}
	return plain, nil
}

// Seal encrypts plaintext under a fresh random nonce and returns the nonce
// followed by the ciphertext.
func (s *Sessions) Seal(owner, id string, plaintext []byte) ([]byte, error) {
	ss, err := s.get(owner, id)
	if err != nil {
		return nil, err
	}

	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err := ss.usableLocked(s.cfg.MaxMessages); err != nil {
		return nil, err
	}
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(s.cfg.Rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("session nonce: %w", err)
	}
	if _, seen := ss.nonces[nonce]; seen { // only a broken Rand gets here
		return nil, ErrReplay
	}
	ss.nonces[nonce] = struct{}{}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+box.Overhead)
	copy(out, nonce[:])
	return box.SealAfterPrecomputation(out, plaintext, &nonce, &ss.key), nil
}

// Lookup returns the owner's live session.
func (s *Sessions) Lookup(owner, id string) (Session, error) {
	ss, err := s.get(owner, id)
	if err != nil {
		return Session{}, err
	}
	return ss.info, nil
}

// End ends the owner's session and wipes its key. Ending an expired session
// is not an error.
func (s *Sessions) End(owner, id string) error {
	s.mu.Lock()
	ss := s.m[id]
	if ss == nil || !sameOwner(ss.info.Owner, owner) {
		s.mu.Unlock()
		return ErrUnknownSession
	}
	delete(s.m, id)
	s.mu.Unlock()
	ss.wipe()
	return nil
}

// Sweep ends every expired session.
func (s *Sessions) Sweep() {
	s.mu.Lock()
	dropped := s.dropExpiredLocked()
	s.mu.Unlock()
	for _, ss := range dropped {
		ss.wipe()
	}
}

// Close ends all sessions and wipes their keys. Create fails afterwards.
func (s *Sessions) Close() {
	s.mu.Lock()
	all := s.m
	s.m = make(map[string]*session)
	s.closed = true
	s.mu.Unlock()
	for _, ss := range all {
		ss.wipe()
	}
}

// get returns the owner's live session, ending it if it has expired.
func (s *Sessions) get(owner, id string) (*session, error) {
	s.mu.Lock()
	ss := s.m[id]
	if ss == nil || !sameOwner(ss.info.Owner, owner) {
		s.mu.Unlock()
		return nil, ErrUnknownSession
	}
	if s.cfg.Now().Before(ss.info.ExpiresAt) {
		s.mu.Unlock()
		return ss, nil
	}
	delete(s.m, id)
	s.mu.Unlock()
	ss.wipe()
	return nil, ErrExpired
}

// dropExpiredLocked removes expired sessions from the map and returns them
// for wiping, which the caller does after s.mu is released so that a session
// busy decrypting does not hold up every other.
func (s *Sessions) dropExpiredLocked() []*session {
	now := s.cfg.Now()
	var dropped []*session
	for id, ss := range s.m {
		if !now.Before(ss.info.ExpiresAt) {
			delete(s.m, id)
			dropped = append(dropped, ss)
		}
	}
	return dropped
}

// usableLocked reports why ss cannot take one more message, if it cannot.
func (ss *session) usableLocked(maxMessages int) error {
	if ss.ended { // ended between get and ss.mu.Lock
		return ErrUnknownSession
	}
	if len(ss.nonces) >= maxMessages {
		return fmt.Errorf("%w: messages in session (limit %d)", ErrTooMany, maxMessages)
	}
	return nil
}

func (ss *session) wipe() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	clear(ss.key[:])
	ss.nonces = nil
	ss.ended = true
}

// sameOwner compares in constant time, as owners are API keys.
func sameOwner(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
