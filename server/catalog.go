package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// catalog lists the models registered through the API, in a JSON file
// replaced atomically, so that they are registered again at the next start.
type catalog struct {
	path    string
	mu      sync.Mutex
	entries []catalogEntry
}

type catalogEntry struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Owner  string `json:"owner"` // the key whose blob holds the bytes
}

func openCatalog(path string) (*catalog, error) {
	c := &catalog{path: path}
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("model catalog: %w", err)
	}
	if err := json.Unmarshal(data, &c.entries); err != nil {
		return nil, fmt.Errorf("model catalog %s: %w", path, err)
	}
	return c, nil
}

func (c *catalog) list() []catalogEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.entries)
}

// add records e, unless its name is there already.
func (c *catalog) add(e catalogEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.ContainsFunc(c.entries, func(o catalogEntry) bool { return o.Name == e.Name }) {
		return nil
	}
	entries := append(slices.Clone(c.entries), e)
	if c.path != "" {
		if err := writeFileAtomic(c.path, entries); err != nil {
			return fmt.Errorf("model catalog: %w", err)
		}
	}
	c.entries = entries
	return nil
}
