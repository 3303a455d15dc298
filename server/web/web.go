// Package web is the page `accelnode serve` serves at /: static files
// embedded in the binary (plain HTML, CSS and ES modules, no build step),
// the sample of MNIST digits the page offers for t-SNE and split learning,
// and the conv weights split learning reads from a model. The server mounts
// them and answers their errors; this package knows no HTTP API of its own
// beyond the static files.
//
// The page opens an encrypted session with tweetnacl-js, as docs/api.md
// describes, seals every job it sends, and checks every receipt it gets back
// in the browser. tweetnacl-js is not committed: `make deps` installs it
// from its package, checked against the lock file's integrity hash, and
// copies nacl-fast.min.js into static/vendor, which the embed picks up. A
// binary built without it serves a page that says so.
package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/accelnode/accelnode/mnist"
)

//go:embed static
var static embed.FS

// NaClFile is the path of tweetnacl-js within the static files.
const NaClFile = "vendor/nacl-fast.min.js"

// Files are the page's static files, as the page requests them under
// /web/: index.html, app.js, style.css, canonical.js (a copy of
// crypto/interop/canonical.js), split.js (a copy of
// examples/split-dense/split.js; tests keep both copies identical) and
// vendor/nacl-fast.min.js where the build put it there.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed holds static/
	}
	return sub
}

// HasNaCl reports whether the binary carries tweetnacl-js.
func HasNaCl() bool {
	_, err := fs.Stat(Files(), NaClFile)
	return err == nil
}

// Security headers of every static answer: the page loads its own scripts,
// styles and API and nothing else, and no other site may frame it.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves files: GET / gives index.html and GET /web/NAME the file
// NAME. Directories are not listed.
func Handler(files fs.FS) http.Handler {
	fileServer := http.StripPrefix("/web/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/" {
			index, err := fs.ReadFile(files, "index.html")
			if err != nil {
				http.Error(w, "the page is missing from this build", http.StatusInternalServerError)
				return
			}
			http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/web/")
		if name == "" || strings.HasSuffix(name, "/") || name == "index.html" || !fs.ValidPath(path.Clean(name)) {
			http.NotFound(w, r)
			return
		}
		fileServer.ServeHTTP(w, r)
	})
}

// Digits are the MNIST test digits the page offers, read from a directory
// of the MNIST files the first time they are asked for.
type Digits struct {
	dir string

	mu  sync.Mutex
	set *mnist.Set
}

// MaxDigits is the most digits a sample holds: the MNIST test set.
const MaxDigits = 10000

// ErrNoDigits is the error of a node that serves no digits.
var ErrNoDigits = errors.New("this node offers no MNIST digits: its operator can start it with --web-data DIR, the directory of the MNIST files (make deps puts them in .deps/mnist)")

// NewDigits serves the test digits of the MNIST files in dir; an empty dir
// serves none.
func NewDigits(dir string) *Digits { return &Digits{dir: dir} }

// Sample is the first N test digits: JSON of the page's GET /web/mnist.
type Sample struct {
	N    int `json:"n"`
	Rows int `json:"rows"`
	Cols int `json:"cols"`
	// Labels are the N digits' classes, 0 to 9.
	Labels []int `json:"labels"`
	// Pixels are N×Rows×Cols bytes (base64 in JSON), image after image,
	// row after row, 0 the background and 255 the ink.
	Pixels []byte `json:"pixels"`
}

// First returns the first n test digits. An error wraps ErrNoDigits where
// the node has none, fs.ErrNotExist where the files are missing.
func (d *Digits) First(n int) (Sample, error) {
	if n < 1 || n > MaxDigits {
		return Sample{}, fmt.Errorf("n %d: want 1 to %d digits", n, MaxDigits)
	}
	if d == nil || d.dir == "" {
		return Sample{}, ErrNoDigits
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.set == nil {
		set, err := mnist.Load(d.dir, "t10k")
		if err != nil {
			return Sample{}, err
		}
		d.set = set
	}
	n = min(n, d.set.N)
	labels := make([]int, n)
	for i, l := range d.set.Labels[:n] {
		labels[i] = int(l)
	}
	side := d.set.Rows * d.set.Cols
	return Sample{N: n, Rows: d.set.Rows, Cols: d.set.Cols, Labels: labels, Pixels: d.set.Images[: n*side : n*side]}, nil
}
