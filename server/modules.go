package server

import (
	"container/list"
	"sync"

	"github.com/accelnode/accelnode/engine"
)

// moduleCache keeps the compiled modules jobs use, the most recently used
// first, up to a bound: a node that compiles whatever clients send must not
// keep all of it. An evicted module is forgotten by the node, which frees its
// code once no job runs it.
type moduleCache struct {
	mu     sync.Mutex
	limit  int
	order  *list.List // of *cached, front most recent
	byHash map[string]*list.Element
	forget func(*engine.Module)
}

type cached struct {
	hash string
	mod  *engine.Module
}

func newModuleCache(limit int, forget func(*engine.Module)) *moduleCache {
	return &moduleCache{limit: limit, order: list.New(), byHash: map[string]*list.Element{}, forget: forget}
}

func (c *moduleCache) get(hash string) *engine.Module {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byHash[hash]; e != nil {
		c.order.MoveToFront(e)
		return e.Value.(*cached).mod
	}
	return nil
}

// put adds mod as hash's, evicting the least recently used beyond the
// limit.
func (c *moduleCache) put(hash string, mod *engine.Module) {
	c.mu.Lock()
	var evicted []*engine.Module
	if e := c.byHash[hash]; e != nil {
		c.order.MoveToFront(e)
		if old := e.Value.(*cached); old.mod != mod {
			evicted = append(evicted, old.mod)
			old.mod = mod
		}
	} else {
		c.byHash[hash] = c.order.PushFront(&cached{hash: hash, mod: mod})
	}
	for c.order.Len() > c.limit {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byHash, last.Value.(*cached).hash)
		evicted = append(evicted, last.Value.(*cached).mod)
	}
	c.mu.Unlock()
	for _, m := range evicted {
		c.forget(m)
	}
}

// drop forgets hash's module, if it is mod: a job found it forgotten.
func (c *moduleCache) drop(hash string, mod *engine.Module) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byHash[hash]; e != nil && e.Value.(*cached).mod == mod {
		c.order.Remove(e)
		delete(c.byHash, hash)
	}
}

func (c *moduleCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
