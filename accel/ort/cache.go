package ort

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
)

// Default bounds of the session caches. An operation's session holds about
// 200 KiB and threads of its own, and a guest chooses the attributes, so
// the bound is what keeps a guest that varies them from growing the node
// without limit. Models are few and chosen by the operator, but each
// session holds the model's weights.
const (
	DefaultOpSessions    = 64
	DefaultModelSessions = 16
)

// CacheStats describes the backend's session caches, for metrics.
type CacheStats struct {
	// Ops counts the sessions of single operations, one per operation and
	// attribute set; Models the sessions of whole models, one per model.
	Ops, Models CacheCounts
}

// CacheCounts describes one session cache.
type CacheCounts struct {
	// Sessions is how many sessions the cache holds, at most Capacity.
	// Evicted sessions still serving a call are not counted.
	Sessions, Capacity int
	// Hits and Misses count lookups; a miss creates a session. Evictions
	// count sessions dropped to stay within Capacity.
	Hits, Misses, Evictions uint64
}

// sessionCache is a bounded LRU of ONNX Runtime sessions by key. A session
// is created outside the lock by the first caller that misses, while later
// callers for the same key wait for it. Callers hold a reference while they
// run a session; an evicted session is destroyed when its last reference is
// released, never under a running call.
type sessionCache struct {
	capacity int

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     list.List // of *cacheEntry, most recently used first
	closed  bool
	counts  CacheCounts
}

// cacheEntry is one session and what the backend learnt about it.
type cacheEntry struct {
	key   string
	elem  *list.Element // nil once evicted
	ready chan struct{} // closed once session or err is set
	refs  int           // guarded by the cache's mu

	session *ort.DynamicAdvancedSession
	model   *modelInfo // for a model's session; nil for an operation's
	err     error
}

// created is what a cache's create function makes.
type created struct {
	session *ort.DynamicAdvancedSession
	model   *modelInfo
}

// errClosed is returned for calls after Close.
var errClosed = fmt.Errorf("%w: backend closed", accel.ErrDevice)

func newSessionCache(capacity int) *sessionCache {
	return &sessionCache{capacity: max(capacity, 1), entries: map[string]*cacheEntry{}}
}

// acquire returns the ready entry for key, creating its session with create
// on a miss, and holds a reference to it that the caller must release.
func (c *sessionCache) acquire(ctx context.Context, key string, create func() (created, error)) (*cacheEntry, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	e, hit := c.entries[key]
	var victims []*cacheEntry
	if hit {
		c.counts.Hits++
		c.lru.MoveToFront(e.elem)
	} else {
		c.counts.Misses++
		e = &cacheEntry{key: key, ready: make(chan struct{})}
		e.elem = c.lru.PushFront(e)
		c.entries[key] = e
		victims = c.evict()
	}
	e.refs++
	c.mu.Unlock()
	destroyAll(victims)

	if !hit {
		c.build(e, create)
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		c.release(e)
		return nil, interrupted(ctx)
	}
	if e.err != nil {
		c.release(e)
		return nil, e.err
	}
	return e, nil
}

// build creates e's session. A failure is not kept: the entry leaves the
// cache, so that a later call tries again, and its waiters get the error.
func (c *sessionCache) build(e *cacheEntry, create func() (created, error)) {
	defer close(e.ready)
	made, err := create()
	if err != nil {
		e.err = err
		c.mu.Lock()
		c.remove(e)
		c.mu.Unlock()
		return
	}
	e.session, e.model = made.session, made.model
}

// evict drops the least recently used entries beyond capacity and returns
// those that no call holds, for the caller to destroy outside the lock.
func (c *sessionCache) evict() []*cacheEntry {
	var victims []*cacheEntry
	for c.lru.Len() > c.capacity {
		e := c.lru.Back().Value.(*cacheEntry)
		c.remove(e)
		c.counts.Evictions++
		if e.refs == 0 {
			victims = append(victims, e)
		}
	}
	return victims
}

// remove takes e out of the map and the list; c.mu is held.
func (c *sessionCache) remove(e *cacheEntry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
}

// release drops a reference taken by acquire, destroying the session if
// it was evicted and this was the last reference.
func (c *sessionCache) release(e *cacheEntry) {
	c.mu.Lock()
	e.refs--
	orphan := e.refs == 0 && e.elem == nil
	c.mu.Unlock()
	if orphan {
		destroyAll([]*cacheEntry{e})
	}
}

// stats returns the cache's counts.
func (c *sessionCache) stats() CacheCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.counts
	st.Sessions, st.Capacity = len(c.entries), c.capacity
	return st
}

// close empties the cache and refuses later lookups. Sessions in use are
// destroyed when their calls release them.
func (c *sessionCache) close() error {
	c.mu.Lock()
	c.closed = true
	var idle []*cacheEntry
	for _, e := range c.entries {
		c.remove(e)
		if e.refs == 0 {
			idle = append(idle, e)
		}
	}
	c.mu.Unlock()
	return destroyAll(idle)
}

// destroyAll destroys the sessions of entries no call holds.
func destroyAll(entries []*cacheEntry) error {
	var errs []error
	for _, e := range entries {
		if e.session == nil {
			continue
		}
		if err := e.session.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy session %q: %w", e.key, err))
		}
		e.session = nil
	}
	return errors.Join(errs...)
}
