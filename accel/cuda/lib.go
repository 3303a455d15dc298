package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// library is one dlopen'ed shared library.
type library struct {
	name   string // what it is, for messages: "cuBLAS"
	path   string // the file or soname that loaded
	handle uintptr
}

// bind points fn, a pointer to a func variable, at symbol. A missing symbol
// is an error naming it, never a panic.
func (l *library) bind(fn any, symbol string) error {
	sym, err := purego.Dlsym(l.handle, symbol)
	if err != nil || sym == 0 {
		return fmt.Errorf("%s (%s) has no symbol %s", l.name, l.path, symbol)
	}
	purego.RegisterFunc(fn, sym)
	return nil
}

// bindAll binds each symbol in syms to its func pointer, stopping at the
// first that is missing.
func (l *library) bindAll(syms map[string]any) error {
	names := make([]string, 0, len(syms))
	for name := range syms {
		names = append(names, name)
	}
	slices.Sort(names) // the same error for the same library every time
	for _, name := range names {
		if err := l.bind(syms[name], name); err != nil {
			return err
		}
	}
	return nil
}

// searchDirs lists the directories, in order, where CUDA libraries are
// looked for before the dynamic loader's own search (the ld cache and
// LD_LIBRARY_PATH): first each place named in places, a colon-separated
// list from accel.Options.Libraries["cuda"], then every /usr/local/cuda*
// installation, newest name first. A named place is searched itself and,
// as an installation root, its targets/*/lib, lib64 and lib; a library
// file stands for its directory. It reads no environment: the program
// passes $CUDA_HOME and the like in places where it honours them.
func searchDirs(places string) []string {
	var dirs []string
	for _, p := range strings.Split(places, ":") {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			p = filepath.Dir(p)
		}
		dirs = append(dirs, p)
		dirs = append(dirs, installDirs(p)...)
	}
	installs, _ := filepath.Glob("/usr/local/cuda*")
	slices.Sort(installs)
	slices.Reverse(installs)
	for _, root := range installs {
		dirs = append(dirs, installDirs(root)...)
	}
	var unique []string
	for _, d := range dirs {
		if !slices.Contains(unique, d) {
			unique = append(unique, d)
		}
	}
	return unique
}

// installDirs lists where a CUDA installation rooted at root keeps its
// libraries.
func installDirs(root string) []string {
	dirs, _ := filepath.Glob(filepath.Join(root, "targets", "*", "lib"))
	return append(dirs, filepath.Join(root, "lib64"), filepath.Join(root, "lib"))
}

// openLibrary loads the first of sonames found, trying each search
// directory and then the dynamic loader's search by soname. The error lists
// what was tried, so the user can tell where the library was expected.
func openLibrary(name string, sonames []string, dirs []string) (*library, error) {
	var tried []string
	var firstErr error
	attempt := func(path string) *library {
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			// A file that exists but will not load is worth reporting over
			// the long list of places it was not.
			if firstErr == nil && strings.Contains(path, "/") {
				firstErr = fmt.Errorf("%s: %w", path, err)
			}
			tried = append(tried, path)
			return nil
		}
		return &library{name: name, path: path, handle: h}
	}
	for _, dir := range dirs {
		for _, so := range sonames {
			path := filepath.Join(dir, so)
			if _, err := os.Stat(path); err != nil {
				continue
			}
			if l := attempt(path); l != nil {
				return l, nil
			}
		}
	}
	for _, so := range sonames {
		if l := attempt(so); l != nil {
			return l, nil
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("%s cannot be loaded: %w", name, firstErr)
	}
	return nil, fmt.Errorf("%s not found (looked for %s in %s and the dynamic loader's path)",
		name, strings.Join(sonames, ", "), dirList(dirs))
}

func dirList(dirs []string) string {
	if len(dirs) == 0 {
		return "no directories"
	}
	return strings.Join(dirs, ", ")
}

// goString copies a NUL-terminated C string.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for ptr := p; *ptr != 0; ptr = (*byte)(unsafe.Add(unsafe.Pointer(ptr), 1)) {
		b = append(b, *ptr)
	}
	return string(b)
}

// cString returns a NUL-terminated copy of s.
func cString(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}
