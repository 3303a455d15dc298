package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/accelnode/accelnode/mnist"
)

// webFlags are serve's flags for the web page at /: the MNIST digits it
// offers for t-SNE and split learning, and the guests it runs.
type webFlags struct {
	data    *string
	modules listFlag
}

// webGuests are the page's guests, by the name it runs them under, and the
// file `make build` writes for each into bin/examples: split is a reactor,
// the actor of split learning.
var webGuests = []struct{ name, file string }{
	{"tsne", "tsne-mnist.wasm"},
	{"mnist", "mnist-classify.wasm"},
	{"split", "split-dense.wasm"},
}

func addWebFlags(flags *flag.FlagSet) *webFlags {
	w := &webFlags{}
	w.data = flags.String("web-data", "", "directory of the MNIST files whose test digits the web page offers for t-SNE and split learning; empty looks for .deps/mnist, off offers none")
	flags.Var(&w.modules, "web-module", "a guest of the web page: NAME=PATH.wasm (repeatable), tsne (examples/tsne-mnist), mnist (examples/mnist-classify) and split (examples/split-dense, a reactor); "+
		"where none is given, each is looked for as examples/FILE beside the binary, in ../share/accelnode/examples, then in ./bin/examples")
	return w
}

// load returns the page's MNIST directory and its guests' bytes. A guest
// or directory named must exist; the defaults are used where they do, and
// log says which are missing.
func (w *webFlags) load(log *slog.Logger) (string, map[string][]byte, error) {
	dir := *w.data
	switch dir {
	case "off":
		dir = ""
	case "":
		if _, err := os.Stat(filepath.Join(".deps", "mnist")); err == nil {
			dir = filepath.Join(".deps", "mnist")
		} else {
			log.Info("the web page offers no MNIST digits: .deps/mnist is missing (make deps; or --web-data DIR)")
		}
	default:
		// Reading the first digit checks the files now, not at the page's
		// first request.
		if _, err := mnist.LoadFirst(dir, "t10k", 1); err != nil {
			return "", nil, fmt.Errorf("--web-data: %w", err)
		}
	}
	mods := map[string][]byte{}
	for _, spec := range w.modules {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			return "", nil, fmt.Errorf("--web-module %q: want NAME=PATH.wasm", spec)
		}
		wasm, err := os.ReadFile(path)
		if err != nil {
			return "", nil, fmt.Errorf("--web-module %s: %w", name, err)
		}
		mods[name] = wasm
	}
	if len(w.modules) > 0 {
		return dir, mods, nil
	}
	var places []string
	if exe, err := os.Executable(); err == nil {
		exe = filepath.Dir(exe)
		places = append(places, filepath.Join(exe, "examples"), filepath.Join(exe, "..", "share", "accelnode", "examples"))
	}
	places = append(places, filepath.Join("bin", "examples"))
	for _, g := range webGuests {
		for _, p := range places {
			wasm, err := os.ReadFile(filepath.Join(p, g.file))
			if err == nil {
				mods[g.name] = wasm
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", nil, fmt.Errorf("web page guest %s: %w", g.name, err)
			}
		}
		if mods[g.name] == nil {
			log.Info("the web page lacks a guest: make build writes it, or name it with --web-module", "guest", g.name, "file", g.file)
		}
	}
	return dir, mods, nil
}
