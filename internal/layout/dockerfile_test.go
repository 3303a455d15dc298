package layout

// Images cannot be built here, so the Dockerfile is checked by reading it:
// its instructions are parsed and held against the repository, .dockerignore,
// go.mod, the Makefile and what `make build` produces.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Names the build gives its outputs, as the Makefile and cmd/node spell them.
const (
	binaryName  = "accelnode"           // go build -o $(BIN)/accelnode
	benchName   = "bench.wasm"          // cmd/node's benchGuestName, looked for beside the binary
	ortName     = "libonnxruntime.so.1" // what scripts/fetch-onnxruntime.sh puts in the deps directory
	modelName   = "mlp.onnx"            // go run ./examples/mlp/model -o $(BIN)/mlp.onnx
	examplesDir = "examples"            // $(BIN)/examples/*.wasm
)

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	line  int               // where it starts in the file
	cmd   string            // the keyword, upper case
	text  string            // everything after the keyword
	flags map[string]string // FROM's, COPY's and ADD's --name=value flags
	args  []string          // a JSON array's elements, or the words of the shell form
	exec  bool              // args came from a JSON array (exec form)
	pairs [][2]string       // ENV's, ARG's and LABEL's keys and values, in order
}

// stage is a FROM and the instructions up to the next one.
type stage struct {
	index  int
	name   string // the AS name, lower case; "" without one
	image  string
	instrs []instruction
}

type dockerfile struct{ stages []*stage }

var keywords = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
	"LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

var directive = regexp.MustCompile(`^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$`)

// parseDockerfile splits text into stages of instructions. A line whose first
// non-blank character is # is a comment, inside a continuation too; a line
// ending in a backslash continues on the next.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{}
	var (
		buf   strings.Builder
		start int
		open  bool // inside a continuation
		seen  bool // past the parser directives
	)
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") {
			if m := directive.FindStringSubmatch(trimmed); !seen && !open && m != nil && strings.EqualFold(m[1], "escape") && m[2] != `\` {
				return nil, fmt.Errorf("line %d: escape character %s is not parsed here", i+1, m[2])
			}
			continue
		}
		seen = true
		if trimmed == "" {
			continue
		}
		if !open {
			start = i + 1
		}
		l = strings.TrimRight(l, " \t")
		if strings.HasSuffix(l, `\`) {
			buf.WriteString(strings.TrimSuffix(l, `\`))
			buf.WriteByte(' ')
			open = true
			continue
		}
		buf.WriteString(l)
		open = false
		ins, err := parseInstruction(start, buf.String())
		buf.Reset()
		if err != nil {
			return nil, err
		}
		switch {
		case ins.cmd == "FROM":
			if len(ins.args) != 1 && !(len(ins.args) == 3 && strings.EqualFold(ins.args[1], "AS")) {
				return nil, fmt.Errorf("line %d: FROM %s: want IMAGE [AS NAME]", ins.line, ins.text)
			}
			st := &stage{index: len(df.stages), image: ins.args[0]}
			if len(ins.args) == 3 {
				st.name = strings.ToLower(ins.args[2])
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0 && ins.cmd != "ARG":
			return nil, fmt.Errorf("line %d: %s before the first FROM", ins.line, ins.cmd)
		case len(df.stages) > 0:
			st := df.stages[len(df.stages)-1]
			st.instrs = append(st.instrs, ins)
		}
	}
	if open {
		return nil, fmt.Errorf("line %d: the file ends inside a continuation", start)
	}
	if len(df.stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return df, nil
}

func parseInstruction(line int, s string) (instruction, error) {
	s = strings.TrimSpace(s)
	kw, rest := s, ""
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		kw, rest = s[:i], strings.TrimSpace(s[i:])
	}
	ins := instruction{line: line, cmd: strings.ToUpper(kw), text: rest}
	if !slices.Contains(keywords, ins.cmd) {
		return ins, fmt.Errorf("line %d: unknown instruction %s", line, kw)
	}
	switch ins.cmd {
	case "FROM", "COPY", "ADD":
		ins.flags = map[string]string{}
		for strings.HasPrefix(rest, "--") {
			word, after, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(word, "--"), "=")
			ins.flags[strings.ToLower(k)] = v
			rest = strings.TrimSpace(after)
		}
		if ins.cmd != "FROM" && strings.Contains(rest, "<<") {
			return ins, fmt.Errorf("line %d: %s with a here-document is not parsed here", line, ins.cmd)
		}
		ins.args, ins.exec = arguments(rest)
	case "ENV", "ARG", "LABEL":
		words, err := shellWords(rest)
		if err != nil {
			return ins, fmt.Errorf("line %d: %s: %w", line, ins.cmd, err)
		}
		if ins.cmd == "ENV" && len(words) > 0 && !strings.Contains(words[0], "=") {
			// The legacy form, ENV KEY VALUE: the value is the rest.
			if len(words) < 2 {
				return ins, fmt.Errorf("line %d: ENV %s has no value", line, rest)
			}
			value, err := shellWords(strings.TrimSpace(strings.TrimPrefix(rest, words[0])))
			if err != nil {
				return ins, fmt.Errorf("line %d: ENV: %w", line, err)
			}
			ins.pairs = [][2]string{{words[0], strings.Join(value, " ")}}
			break
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok && ins.cmd != "ARG" {
				return ins, fmt.Errorf("line %d: %s %s: want KEY=VALUE", line, ins.cmd, w)
			}
			ins.pairs = append(ins.pairs, [2]string{k, v})
		}
	default:
		ins.args, ins.exec = arguments(rest)
	}
	return ins, nil
}

// arguments reads the exec form, a JSON array of strings, or failing that
// the shell form's words.
func arguments(s string) ([]string, bool) {
	if strings.HasPrefix(s, "[") {
		var a []string
		if json.Unmarshal([]byte(s), &a) == nil {
			return a, true
		}
	}
	return strings.Fields(s), false
}

// shellWords splits s at blanks outside quotes, removing the quotes and the
// backslashes that escape a character.
func shellWords(s string) ([]string, error) {
	var (
		words  []string
		w      strings.Builder
		inWord bool
		quote  byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %s", quote, s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// stage returns the stage ref names, by its AS name or its index.
func (df *dockerfile) stage(ref string) *stage {
	for _, st := range df.stages {
		if st.name != "" && st.name == strings.ToLower(ref) || fmt.Sprint(st.index) == ref {
			return st
		}
	}
	return nil
}

// env returns the value the stage's last ENV gives name.
func (st *stage) env(name string) (string, bool) {
	value, ok := "", false
	for _, ins := range st.instrs {
		if ins.cmd == "ENV" {
			for _, p := range ins.pairs {
				if p[0] == name {
					value, ok = p[1], true
				}
			}
		}
	}
	return value, ok
}

// copySources splits a COPY or ADD into its sources and destination.
func copySources(ins instruction) ([]string, string, error) {
	if len(ins.args) < 2 {
		return nil, "", fmt.Errorf("line %d: %s %s: want SOURCE... DEST", ins.line, ins.cmd, ins.text)
	}
	return ins.args[:len(ins.args)-1], ins.args[len(ins.args)-1], nil
}

// ignorer is .dockerignore: patterns as filepath.Match reads them, with **
// for any number of directories, ! for exceptions, the last match winning;
// a pattern that matches a directory excludes what it holds.
type ignorer struct {
	rules []ignoreRule
}

type ignoreRule struct {
	pattern   string
	re        *regexp.Regexp
	exception bool
}

func parseIgnore(text string) (*ignorer, error) {
	ig := &ignorer{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		r := ignoreRule{pattern: l}
		if strings.HasPrefix(l, "!") {
			r.exception, l = true, strings.TrimSpace(l[1:])
		}
		l = strings.TrimPrefix(path.Clean(l), "/")
		re, err := ignoreRegexp(l)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore %s: %w", r.pattern, err)
		}
		r.re = re
		ig.rules = append(ig.rules, r)
	}
	return ig, nil
}

func ignoreRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
				if i+1 < len(pattern) && pattern[i+1] == '/' {
					i++
					b.WriteString("(.*/)?")
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [")
			}
			b.WriteString(pattern[i : i+j+1])
			i += j
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// excluded reports whether the context leaves out rel (slash-separated,
// relative to the context), and the pattern that decided it.
func (ig *ignorer) excluded(rel string) (bool, string) {
	out, by := false, ""
	for _, r := range ig.rules {
		for p := rel; p != "." && p != "/"; p = path.Dir(p) {
			if r.re.MatchString(p) {
				out, by = !r.exception, r.pattern
				break
			}
		}
	}
	return out, by
}

// makeInfo is what the Makefile says about the build's outputs.
type makeInfo struct {
	bin      string   // $(BIN), where make build writes the binary and guests
	deps     string   // where make deps puts ONNX Runtime
	fetch    string   // the script that fetches it
	examples []string // $(EXAMPLES)
}

func parseMakefile(text string) (makeInfo, error) {
	var mk makeInfo
	if !regexp.MustCompile(`(?m)^build:`).MatchString(text) {
		return mk, errors.New("the Makefile has no build target")
	}
	if m := regexp.MustCompile(`(?m)^BIN\s*:?=\s*(\S+)\s*$`).FindStringSubmatch(text); m != nil {
		mk.bin = m[1]
	}
	if m := regexp.MustCompile(`(?m)^EXAMPLES\s*:?=\s*(.+)$`).FindStringSubmatch(text); m != nil {
		mk.examples = strings.Fields(m[1])
	}
	if m := regexp.MustCompile(`(?m)^\t(scripts/fetch-onnxruntime\.sh)\s+(\S+)\s*$`).FindStringSubmatch(text); m != nil {
		mk.fetch, mk.deps = m[1], m[2]
	}
	if mk.bin == "" || mk.deps == "" || len(mk.examples) == 0 {
		return mk, fmt.Errorf("the Makefile does not say BIN (%q), EXAMPLES (%q) and where fetch-onnxruntime.sh puts the library (%q)", mk.bin, mk.examples, mk.deps)
	}
	return mk, nil
}

// goLine reads go.mod's go line.
func goLine(gomod string) string {
	if m := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindStringSubmatch(gomod); m != nil {
		return m[1]
	}
	return ""
}

type problems []string

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Sprintf(format, a...)) }

// copied is one source the runtime stage copies from the build stage.
type copied struct {
	line int
	rel  string // the source relative to where make build ran; may be a glob
	dest string
}

// target returns where the image holds rel, a file the build produced.
func (c copied) target(rel string) (string, bool) {
	switch m, _ := path.Match(c.rel, rel); {
	case c.rel == rel || m:
		if strings.HasSuffix(c.dest, "/") {
			return path.Join(c.dest, path.Base(rel)), true
		}
		return c.dest, true
	case strings.HasPrefix(rel, c.rel+"/"):
		return path.Join(c.dest, strings.TrimPrefix(rel, c.rel+"/")), true
	}
	return "", false
}

// image is what the checks learn of the Dockerfile's two stages.
type image struct {
	build, runtime *stage
	buildDir       string   // the WORKDIR where make build runs
	copies         []copied // the runtime stage's COPY --from=build sources
}

func targetOf(copies []copied, rel string) (string, bool) {
	for _, c := range copies {
		if dest, ok := c.target(rel); ok {
			return dest, true
		}
	}
	return "", false
}

// checkImage checks what can be checked without a build: the stages, the Go
// image's version, where make build runs and where its outputs go, the
// entrypoint, the environment, the user and the volume.
func checkImage(df *dockerfile, goVersion string, mk makeInfo) (*image, []string) {
	var p problems
	im := &image{build: df.stage("build"), runtime: df.stages[len(df.stages)-1]}
	if im.build == nil {
		p.add("no stage named build, which the runtime stage copies from")
		return im, p
	}
	if im.runtime == im.build {
		p.add("the build stage is the last: there is no runtime stage")
		return im, p
	}

	// The Go image: the version go.mod names, or its minor release.
	name, tag, _ := strings.Cut(im.build.image, ":")
	if name != "golang" && name != "docker.io/library/golang" {
		p.add("the build stage's image is %s, not the official golang image", im.build.image)
	}
	version, _, _ := strings.Cut(tag, "-")
	minor := goVersion
	if parts := strings.Split(goVersion, "."); len(parts) > 2 {
		minor = strings.Join(parts[:2], ".")
	}
	if goVersion == "" || !(version == goVersion || version == minor || minor == goVersion && strings.HasPrefix(version, minor+".")) {
		p.add("the build stage's image is %s, but go.mod says go %s", im.build.image, goVersion)
	}

	// The build stage: npm installed, the module files copied and
	// downloaded before the source, and make build after the last COPY.
	dir := "/"
	makeAt, npmAt, modCopyAt, downloadAt, lastCopy := -1, -1, -1, -1, -1
	runsMake := regexp.MustCompile(`(^|[;&|(]\s*)make\b[^;&|]*\bbuild\b`)
	installsNPM := regexp.MustCompile(`apt-get\s+install\b[^;&|]*\bnpm\b`)
	for i, ins := range im.build.instrs {
		switch ins.cmd {
		case "WORKDIR":
			dir = path.Join(dir, ins.text)
		case "COPY", "ADD":
			if ins.flags["from"] != "" {
				continue
			}
			lastCopy = i
			if srcs, _, err := copySources(ins); err == nil && slices.Contains(srcs, "go.mod") && modCopyAt < 0 {
				modCopyAt = i
			}
		case "RUN":
			if runsMake.MatchString(ins.text) && makeAt < 0 {
				makeAt, im.buildDir = i, dir
			}
			if installsNPM.MatchString(ins.text) && npmAt < 0 {
				npmAt = i
			}
			if strings.Contains(ins.text, "go mod download") && downloadAt < 0 {
				downloadAt = i
			}
		}
	}
	switch {
	case makeAt < 0:
		p.add("the build stage does not RUN make build")
	case makeAt < lastCopy:
		p.add("line %d: make build runs before the last COPY of the build stage (line %d)", im.build.instrs[makeAt].line, im.build.instrs[lastCopy].line)
	}
	if npmAt < 0 || makeAt >= 0 && npmAt > makeAt {
		p.add("the build stage does not apt-get install npm before make build: make deps fetches ONNX Runtime with it")
	}
	if modCopyAt < 0 || downloadAt < modCopyAt || downloadAt > lastCopy {
		p.add("go mod download does not run between the COPY of go.mod and the COPY of the source, so the modules' layer is not cached")
	}

	// The runtime stage: a glibc image, and what it copies from the build.
	if base := im.runtime.image; base == "scratch" || strings.Contains(base, "alpine") || strings.Contains(base, "static") {
		p.add("the runtime stage's image %s has no glibc, which the binary and ONNX Runtime need", base)
	}
	lastRuntimeCopy := -1
	for i, ins := range im.runtime.instrs {
		if ins.cmd != "COPY" && ins.cmd != "ADD" {
			continue
		}
		lastRuntimeCopy = i
		from, ok := ins.flags["from"]
		if !ok {
			continue
		}
		if df.stage(from) != im.build {
			p.add("line %d: COPY --from=%s: not the build stage", ins.line, from)
			continue
		}
		srcs, dest, err := copySources(ins)
		if err != nil {
			p.add("%v", err)
			continue
		}
		if !path.IsAbs(dest) {
			p.add("line %d: destination %s is not absolute", ins.line, dest)
		}
		if (len(srcs) > 1 || strings.ContainsAny(srcs[0], "*?[")) && !strings.HasSuffix(dest, "/") {
			p.add("line %d: several sources need a destination ending in /, not %s", ins.line, dest)
		}
		for _, src := range srcs {
			abs := path.Join("/", src)
			rel, ok := strings.CutPrefix(abs, strings.TrimSuffix(im.buildDir, "/")+"/")
			if !ok {
				p.add("line %d: %s is not under %s, where make build runs", ins.line, src, im.buildDir)
				continue
			}
			if !under(rel, mk.bin, mk.deps) {
				p.add("line %d: %s is not in %s or %s, where make build writes", ins.line, src, mk.bin, mk.deps)
			}
			im.copies = append(im.copies, copied{ins.line, rel, dest})
		}
	}

	// The binary, and the entrypoint that runs it.
	binary, ok := targetOf(im.copies, path.Join(mk.bin, binaryName))
	if !ok {
		p.add("the runtime stage does not copy %s", path.Join(mk.bin, binaryName))
	}
	var entry *instruction
	for _, ins := range im.runtime.instrs {
		if ins.cmd == "ENTRYPOINT" {
			entry = &ins
		}
	}
	switch {
	case entry == nil:
		p.add("the runtime stage has no ENTRYPOINT")
	case !entry.exec:
		p.add("line %d: ENTRYPOINT %s is not in exec form: under /bin/sh -c the node would not get SIGTERM", entry.line, entry.text)
	case len(entry.args) == 0 || entry.args[0] != binary:
		p.add("line %d: ENTRYPOINT runs %q, but the binary is copied to %s", entry.line, entry.args, binary)
	case len(entry.args) < 2 || entry.args[1] != "serve":
		p.add("line %d: ENTRYPOINT %q does not run serve", entry.line, entry.args)
	}

	// What goes with the binary.
	if bench, ok := targetOf(im.copies, path.Join(mk.bin, benchName)); !ok || path.Dir(bench) != path.Dir(binary) {
		p.add("%s is copied to %q, not beside the binary (%s), where accelnode bench looks for it", benchName, bench, binary)
	}
	if _, ok := targetOf(im.copies, path.Join(mk.bin, modelName)); !ok {
		p.add("the runtime stage does not copy %s", path.Join(mk.bin, modelName))
	}
	for _, e := range mk.examples {
		if _, ok := targetOf(im.copies, path.Join(mk.bin, examplesDir, e+".wasm")); !ok {
			p.add("the runtime stage does not copy the example guest %s", path.Join(mk.bin, examplesDir, e+".wasm"))
		}
	}
	lib, ok := targetOf(im.copies, path.Join(mk.deps, ortName))
	if !ok {
		p.add("the runtime stage does not copy %s", path.Join(mk.deps, ortName))
	}

	// The environment.
	var volumes []string
	for _, ins := range im.runtime.instrs {
		if ins.cmd == "VOLUME" {
			volumes = append(volumes, ins.args...)
		}
	}
	inVolume := func(v string) bool {
		for _, vol := range volumes {
			if under(path.Clean(v), path.Clean(vol)) {
				return true
			}
		}
		return false
	}
	if !slices.Contains(volumes, "/data") {
		p.add("VOLUME %q does not include /data", volumes)
	}
	var exposed []string
	for _, ins := range im.runtime.instrs {
		if ins.cmd == "EXPOSE" {
			for _, a := range ins.args {
				exposed = append(exposed, strings.TrimSuffix(a, "/tcp"))
			}
		}
	}
	for _, c := range []struct {
		name string
		ok   func(string) bool
		want string
	}{
		{"ONNXRUNTIME_SHARED_LIBRARY_PATH", func(v string) bool { return v == lib }, "where " + ortName + " is copied (" + lib + ")"},
		{"NVIDIA_VISIBLE_DEVICES", func(v string) bool { return v != "" && v != "void" && v != "none" }, "all"},
		{"NVIDIA_DRIVER_CAPABILITIES", func(v string) bool {
			caps := strings.Split(v, ",")
			return slices.Contains(caps, "all") || slices.Contains(caps, "compute") && slices.Contains(caps, "utility")
		}, "compute,utility"},
		{"ACCELNODE_DATA", inVolume, "a directory in a VOLUME"},
		{"ACCELNODE_CACHE_DIR", func(v string) bool { return v == "off" || inVolume(v) }, "a directory in a VOLUME (the user cannot write elsewhere)"},
		{"ACCELNODE_LISTEN", func(v string) bool {
			host, port, err := net.SplitHostPort(v)
			ip := net.ParseIP(host)
			return err == nil && host != "localhost" && (ip == nil || !ip.IsLoopback()) && slices.Contains(exposed, port)
		}, "a non-loopback address whose port is EXPOSEd (" + strings.Join(exposed, ", ") + ")"},
	} {
		if v, set := im.runtime.env(c.name); !set || !c.ok(v) {
			p.add("the runtime stage sets %s=%q, want %s", c.name, v, c.want)
		}
	}

	// A user other than root, from the last COPY on.
	lastUser, user := -1, ""
	for i, ins := range im.runtime.instrs {
		if ins.cmd == "USER" {
			lastUser, user = i, ins.text
		}
	}
	name, _, _ = strings.Cut(user, ":")
	switch {
	case lastUser < 0:
		p.add("the runtime stage has no USER: the node would run as root")
	case name == "" || name == "root" || name == "0":
		p.add("line %d: USER %s is root", im.runtime.instrs[lastUser].line, user)
	case lastUser < lastRuntimeCopy:
		p.add("line %d: USER comes before the last COPY (line %d)", im.runtime.instrs[lastUser].line, im.runtime.instrs[lastRuntimeCopy].line)
	}
	return im, p
}

// checkContext checks every COPY from the build context: its sources exist
// in root and .dockerignore keeps them; and every file in needed (the
// files make build reads) is copied into the build stage and kept.
func checkContext(df *dockerfile, build *stage, root string, ig *ignorer, needed []string) []string {
	var p problems
	var sources []string
	for _, st := range df.stages {
		for _, ins := range st.instrs {
			if ins.cmd != "COPY" && ins.cmd != "ADD" || ins.flags["from"] != "" {
				continue
			}
			srcs, _, err := copySources(ins)
			if err != nil {
				p.add("%v", err)
				continue
			}
			for _, src := range srcs {
				if ins.cmd == "ADD" && strings.Contains(src, "://") {
					continue
				}
				rel := strings.TrimPrefix(path.Clean("/"+src), "/")
				if rel == "" {
					rel = "."
				}
				if strings.HasPrefix(path.Clean(src), "..") {
					p.add("line %d: %s %s is outside the build context", ins.line, ins.cmd, src)
					continue
				}
				if st == build {
					sources = append(sources, rel)
				}
				if rel == "." {
					continue
				}
				matches, _ := filepath.Glob(filepath.Join(root, filepath.FromSlash(rel)))
				if len(matches) == 0 {
					p.add("line %d: %s %s: no such file in the repository", ins.line, ins.cmd, src)
				}
				for _, m := range matches {
					r, _ := filepath.Rel(root, m)
					if out, by := ig.excluded(filepath.ToSlash(r)); out {
						p.add("line %d: %s %s: .dockerignore leaves %s out (%s)", ins.line, ins.cmd, src, filepath.ToSlash(r), by)
					}
				}
			}
		}
	}
	for _, f := range needed {
		covered := false
		for _, src := range sources {
			m, _ := path.Match(src, f)
			covered = covered || src == "." || m || strings.HasPrefix(f, src+"/")
		}
		if !covered {
			p.add("%s, which make build reads, is not copied into the build stage", f)
		}
		if out, by := ig.excluded(f); out {
			p.add("%s, which make build reads, is left out of the context by .dockerignore (%s)", f, by)
		}
	}
	return p
}

// checkOutputs checks the runtime stage's COPY --from=build sources against
// a build: resolve maps a source relative to where make build ran to a path
// on this machine; produced lists what make build wrote to $(BIN), each of
// which the image must carry.
func checkOutputs(im *image, resolve func(rel string) string, produced []string) []string {
	var p problems
	for _, c := range im.copies {
		matches, _ := filepath.Glob(resolve(c.rel))
		if len(matches) == 0 {
			p.add("line %d: COPY --from=build %s: make build does not produce %s", c.line, path.Join(im.buildDir, c.rel), c.rel)
		}
	}
	for _, f := range produced {
		if _, ok := targetOf(im.copies, f); !ok {
			p.add("make build produces %s, which the image does not carry", f)
		}
	}
	return p
}

// repoRoot is the module root, two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

func readRepoFile(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loadImage parses the repository's Dockerfile and Makefile and runs the
// checks that need no build.
func loadImage(t *testing.T, root string) (*dockerfile, *image, makeInfo) {
	t.Helper()
	df, err := parseDockerfile(readRepoFile(t, root, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	mk, err := parseMakefile(readRepoFile(t, root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	im, problems := checkImage(df, goLine(readRepoFile(t, root, "go.mod")), mk)
	for _, p := range problems {
		t.Errorf("Dockerfile: %s", p)
	}
	return df, im, mk
}

// buildInputs lists the files make build reads, relative to root: go.mod,
// go.sum, the Makefile, the fetch script, and the module's own source and
// embedded files of every package it builds, for the host and for wasip1.
func buildInputs(t *testing.T, root string, mk makeInfo) []string {
	t.Helper()
	files := []string{"go.mod", "go.sum", "Makefile", mk.fetch}
	wasm := []string{"./bench/guest"}
	for _, e := range mk.examples {
		wasm = append(wasm, "./examples/"+e)
	}
	const format = `{{if and .Module .Module.Main}}{{.Dir}}{{range .GoFiles}}|{{.}}{{end}}{{range .SFiles}}|{{.}}{{end}}{{range .HFiles}}|{{.}}{{end}}{{range .EmbedFiles}}|{{.}}{{end}}{{end}}`
	for _, q := range []struct {
		env  []string
		pkgs []string
	}{
		{nil, []string{"./cmd/node", "./examples/mlp/model"}},
		{[]string{"GOOS=wasip1", "GOARCH=wasm"}, wasm},
	} {
		cmd := exec.Command("go", append([]string{"list", "-deps", "-f", format}, q.pkgs...)...)
		cmd.Dir, cmd.Env = root, append(os.Environ(), q.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("go list: %v", err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Split(l, "|")
			if fields[0] == "" {
				continue
			}
			dir, err := filepath.Rel(root, fields[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fields[1:] {
				files = append(files, path.Join(filepath.ToSlash(dir), f))
			}
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// TestDockerfile checks the Dockerfile against the repository without
// building it: the checks of checkImage, and the build context's.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	df, im, mk := loadImage(t, root)
	ig, err := parseIgnore(readRepoFile(t, root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	needed := buildInputs(t, root, mk)
	if !slices.Contains(needed, "cmd/node/main.go") {
		t.Fatalf("the build inputs do not include cmd/node/main.go: %q", needed)
	}
	for _, p := range checkContext(df, im.build, root, ig, needed) {
		t.Errorf("Dockerfile: %s", p)
	}
	// The build stage builds its own outputs: local ones stay out of the
	// context, and so does the repository's history.
	for _, f := range []string{path.Join(mk.bin, binaryName), path.Join(mk.deps, ortName), ".git/HEAD"} {
		if out, _ := ig.excluded(f); !out {
			t.Errorf(".dockerignore does not leave %s out of the build context", f)
		}
	}
}

// TestDockerfileBuildOutputs runs make build into a temporary $(BIN) and
// checks that every COPY --from=build source is something it produced, and
// that everything it put in $(BIN) reaches the image. The ONNX Runtime
// library is the one make deps put in the repository's deps directory.
func TestDockerfileBuildOutputs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the node: not in -short")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("make deps fetches ONNX Runtime for linux/amd64 only, as the image is built")
	}
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	root := repoRoot(t)
	_, im, mk := loadImage(t, root)
	if t.Failed() {
		return
	}
	if _, err := os.Stat(filepath.Join(root, mk.deps, ortName)); err != nil {
		t.Skipf("run make deps first (make test does): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	cmd := exec.Command(makePath, "-C", root, "build", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build BIN=%s: %v\n%s", bin, err, out)
	}
	resolve := func(rel string) string {
		if rest, ok := strings.CutPrefix(rel, mk.bin+"/"); ok {
			return filepath.Join(bin, filepath.FromSlash(rest))
		}
		return filepath.Join(root, filepath.FromSlash(rel))
	}
	var produced []string
	err = filepath.WalkDir(bin, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		r, err := filepath.Rel(bin, p)
		produced = append(produced, path.Join(mk.bin, filepath.ToSlash(r)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(produced, path.Join(mk.bin, binaryName)) {
		t.Fatalf("make build produced %q, without %s", produced, binaryName)
	}
	for _, p := range checkOutputs(im, resolve, produced) {
		t.Errorf("Dockerfile: %s", p)
	}
}

// goodDockerfile passes every check; each case of TestDockerfileChecksFail
// breaks it in one way.
const goodDockerfile = `# syntax=docker/dockerfile:1
FROM golang:1.26.8-bookworm AS build
RUN apt-get update \
	# a comment inside a continuation
	&& apt-get install -y npm openssl
WORKDIR /src
COPY ["go.mod", "go.sum", "./"]
RUN go mod download
COPY . .
RUN make build

FROM debian:bookworm-slim
COPY --from=build /src/bin/accelnode /src/bin/bench.wasm /usr/local/bin/
COPY --from=build /src/bin/examples/*.wasm /usr/local/share/accelnode/examples/
COPY --from=build ["/src/bin/mlp.onnx", "/usr/local/share/accelnode/"]
COPY --from=build /src/.deps/libonnxruntime.so.1 /usr/local/lib/accelnode/
ENV ONNXRUNTIME_SHARED_LIBRARY_PATH=/usr/local/lib/accelnode/libonnxruntime.so.1 \
	NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES="compute,utility"
ENV ACCELNODE_DATA /data
ENV ACCELNODE_CACHE_DIR=/data/cache ACCELNODE_LISTEN=0.0.0.0:8080
USER accelnode
VOLUME ["/data"]
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/accelnode", "serve"]
`

var testMake = makeInfo{bin: "bin", deps: ".deps", fetch: "scripts/fetch-onnxruntime.sh", examples: []string{"matmul", "cnn"}}

func TestDockerfileChecksFail(t *testing.T) {
	const (
		copyBinary = "COPY --from=build /src/bin/accelnode /src/bin/bench.wasm /usr/local/bin/\n"
		copyLib    = "COPY --from=build /src/.deps/libonnxruntime.so.1 /usr/local/lib/accelnode/\n"
		copyModel  = "COPY --from=build [\"/src/bin/mlp.onnx\", \"/usr/local/share/accelnode/\"]\n"
		entry      = `ENTRYPOINT ["/usr/local/bin/accelnode", "serve"]`
	)
	for _, c := range []struct {
		name, old, new string
		want           string // a problem that says this; "" for none
	}{
		{"as it is", "", "", ""},
		{"minor-release image", "golang:1.26.8-bookworm", "golang:1.26-bookworm", ""},
		{"stage by index", `--from=build ["/src/bin/mlp.onnx"`, `--from=0 ["/src/bin/mlp.onnx"`, ""},
		{"no build stage", "AS build", "AS compile", "no stage named build"},
		{"older Go", "golang:1.26.8-bookworm", "golang:1.25-bookworm", "go.mod says go 1.26.8"},
		{"other patch release", "golang:1.26.8-bookworm", "golang:1.26.7-bookworm", "go.mod says go 1.26.8"},
		{"not the Go image", "golang:1.26.8-bookworm", "debian:bookworm", "not the official golang image"},
		{"no npm", "npm openssl", "openssl", "npm"},
		{"make before the source", "COPY . .\nRUN make build", "RUN make build\nCOPY . .", "before the last COPY"},
		{"no make build", "RUN make build", "RUN go build ./cmd/node", "does not RUN make build"},
		{"modules after the source", "RUN go mod download\nCOPY . .", "COPY . .\nRUN go mod download", "go mod download"},
		{"one stage", "FROM debian:bookworm-slim\n", "", "there is no runtime stage"},
		{"musl runtime", "debian:bookworm-slim", "alpine:3.20", "no glibc"},
		{"from another stage", `--from=build ["/src/bin/mlp.onnx"`, `--from=golang:1.26 ["/src/bin/mlp.onnx"`, "not the build stage"},
		{"entrypoint elsewhere", entry, `ENTRYPOINT ["/usr/bin/accelnode", "serve"]`, "but the binary is copied to /usr/local/bin/accelnode"},
		{"binary elsewhere", copyBinary, "COPY --from=build /src/bin/accelnode /src/bin/bench.wasm /opt/accelnode/\n", "but the binary is copied to /opt/accelnode/accelnode"},
		{"entrypoint in shell form", entry, "ENTRYPOINT /usr/local/bin/accelnode serve", "not in exec form"},
		{"entrypoint not serve", entry, `ENTRYPOINT ["/usr/local/bin/accelnode", "run"]`, "does not run serve"},
		{"no entrypoint", entry, "", "no ENTRYPOINT"},
		{"binary not copied", copyBinary, "COPY --from=build /src/bin/bench.wasm /usr/local/bin/\n", "does not copy bin/accelnode"},
		{"bench.wasm elsewhere", copyBinary, "COPY --from=build /src/bin/accelnode /usr/local/bin/\nCOPY --from=build /src/bin/bench.wasm /usr/local/share/\n", "not beside the binary"},
		{"several sources, one file", "bench.wasm /usr/local/bin/", "bench.wasm /usr/local/bin", "ending in /"},
		{"relative destination", "/usr/local/share/accelnode/examples/", "share/examples/", "not absolute"},
		{"outside the build directory", "/src/.deps/", "/root/.deps/", "not under /src"},
		{"not a build output", "/src/.deps/libonnxruntime.so.1", "/src/scripts/libonnxruntime.so.1", "where make build writes"},
		{"no ONNX Runtime", copyLib, "", "does not copy .deps/libonnxruntime.so.1"},
		{"ONNX Runtime path", "ONNXRUNTIME_SHARED_LIBRARY_PATH=/usr/local/lib/accelnode/", "ONNXRUNTIME_SHARED_LIBRARY_PATH=/usr/lib/", "ONNXRUNTIME_SHARED_LIBRARY_PATH"},
		{"no examples", "COPY --from=build /src/bin/examples/*.wasm /usr/local/share/accelnode/examples/\n", "", "example guest"},
		{"one example", "/src/bin/examples/*.wasm", "/src/bin/examples/cnn.wasm", "bin/examples/matmul.wasm"},
		{"no model", copyModel, "", "does not copy bin/mlp.onnx"},
		{"no NVIDIA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES=all ", "", "NVIDIA_VISIBLE_DEVICES"},
		{"no compute", `"compute,utility"`, "utility", "NVIDIA_DRIVER_CAPABILITIES"},
		{"no utility", `"compute,utility"`, "compute", "NVIDIA_DRIVER_CAPABILITIES"},
		{"root", "USER accelnode", "USER root", "is root"},
		{"uid 0", "USER accelnode", "USER 0:0", "is root"},
		{"no user", "USER accelnode\n", "", "no USER"},
		{"user before a copy", "USER accelnode\n", "", "before the last COPY"},
		{"no /data volume", `VOLUME ["/data"]`, "VOLUME /var/lib/accelnode", "does not include /data"},
		{"data outside the volume", "ENV ACCELNODE_DATA /data", "ENV ACCELNODE_DATA /srv", "ACCELNODE_DATA"},
		{"cache outside the volume", "ACCELNODE_CACHE_DIR=/data/cache", "ACCELNODE_CACHE_DIR=/var/cache/accelnode", "ACCELNODE_CACHE_DIR"},
		{"loopback", "0.0.0.0:8080", "127.0.0.1:8080", "ACCELNODE_LISTEN"},
		{"port not exposed", "EXPOSE 8080/tcp", "EXPOSE 9090", "ACCELNODE_LISTEN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := goodDockerfile
			if c.old != "" {
				if strings.Count(text, c.old) != 1 {
					t.Fatalf("%q is not in the Dockerfile once", c.old)
				}
				text = strings.Replace(text, c.old, c.new, 1)
			}
			if c.name == "user before a copy" {
				text = strings.Replace(text, copyLib, "USER accelnode\n"+copyLib, 1)
			}
			df, err := parseDockerfile(text)
			if err != nil {
				t.Fatal(err)
			}
			_, problems := checkImage(df, "1.26.8", testMake)
			wantProblem(t, problems, c.want)
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	df, err := parseDockerfile(goodDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	if len(df.stages) != 2 || df.stages[0].name != "build" || df.stages[0].image != "golang:1.26.8-bookworm" || df.stages[1].image != "debian:bookworm-slim" {
		t.Fatalf("stages: %+v", df.stages)
	}
	build, rt := df.stages[0].instrs, df.stages[1].instrs
	for _, c := range []struct {
		name string
		got  any
		want any
	}{
		{"continuation joined, comment dropped", build[0].text, "apt-get update  \t&& apt-get install -y npm openssl"},
		{"continuation's line", build[0].line, 3},
		{"line after a continuation", build[1].line, 6},
		{"JSON COPY", fmt.Sprint(build[2].args, build[2].exec), "[go.mod go.sum ./] true"},
		{"shell COPY", fmt.Sprint(build[4].args, build[4].exec), "[. .] false"},
		{"COPY --from", rt[0].flags["from"], "build"},
		{"COPY --from sources", fmt.Sprint(rt[0].args), "[/src/bin/accelnode /src/bin/bench.wasm /usr/local/bin/]"},
		{"JSON COPY --from", fmt.Sprint(rt[2].flags["from"], " ", rt[2].args), "build [/src/bin/mlp.onnx /usr/local/share/accelnode/]"},
		{"ENV pairs across lines, quotes removed", fmt.Sprint(rt[4].pairs), "[[ONNXRUNTIME_SHARED_LIBRARY_PATH /usr/local/lib/accelnode/libonnxruntime.so.1] [NVIDIA_VISIBLE_DEVICES all] [NVIDIA_DRIVER_CAPABILITIES compute,utility]]"},
		{"legacy ENV", fmt.Sprint(rt[5].pairs), "[[ACCELNODE_DATA /data]]"},
		{"JSON VOLUME", fmt.Sprint(rt[8].args, rt[8].exec), "[/data] true"},
		{"JSON ENTRYPOINT", fmt.Sprint(rt[10].args, rt[10].exec), "[/usr/local/bin/accelnode serve] true"},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	if v, _ := df.stages[1].env("ACCELNODE_LISTEN"); v != "0.0.0.0:8080" {
		t.Errorf("ACCELNODE_LISTEN = %q", v)
	}
	for _, c := range []struct{ name, text, want string }{
		{"empty", "# nothing\n", "no FROM"},
		{"open continuation", "FROM a\nRUN x \\\n", "inside a continuation"},
		{"before FROM", "RUN x\nFROM a\n", "before the first FROM"},
		{"unknown", "FROM a\nFOO bar\n", "unknown instruction"},
		{"quote", "FROM a\nENV X=\"y\n", "unterminated"},
		{"not KEY=VALUE", "FROM a\nENV X=y z\n", "want KEY=VALUE"},
		{"escape", "# escape=`\nFROM a\n", "escape character"},
		{"here-document", "FROM a\nCOPY <<EOF /x\nhi\nEOF\n", "here-document"},
		{"bad FROM", "FROM a b\n", "want IMAGE [AS NAME]"},
	} {
		if _, err := parseDockerfile(c.text); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestDockerignore(t *testing.T) {
	ig, err := parseIgnore("# comment\n.git\nbin/\n/.deps\n**/node_modules\n**/*.test\ndocs/*.md\n!docs/keep.md\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		out  bool
	}{
		{".git/HEAD", true},
		{"bin", true},
		{"bin/examples/cnn.wasm", true},
		{"cmd/bin/x", false},
		{".deps/libonnxruntime.so.1", true},
		{"node_modules/x/y.js", true},
		{"a/b/node_modules/z", true},
		{"ref.test", true},
		{"accel/ref/ref.test", true},
		{"accel/ref/ref_test.go", false},
		{"docs/api.md", true},
		{"docs/keep.md", false},
		{"docs/bench/dev.md", false},
		{"Makefile", false},
		{"# comment", false},
	} {
		if out, by := ig.excluded(c.path); out != c.out {
			t.Errorf("%s: excluded %v (%s), want %v", c.path, out, by, c.out)
		}
	}
}

func TestDockerContextChecksFail(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"go.mod", "main.go", "bin/accelnode"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	needed := []string{"go.mod", "main.go"}
	for _, c := range []struct {
		name, copies, ignore, want string
	}{
		{"all of it", "COPY go.mod ./\nCOPY . .", "bin/", ""},
		{"file by file", "COPY go.mod main.go ./", "bin/", ""},
		{"by glob", "COPY *.go go.mod ./", "", ""},
		{"exception", "COPY . .", "*.go\n!main.go", ""},
		{"missing source", "COPY nothere ./\nCOPY . .", "", "nothere: no such file"},
		{"excluded source", "COPY bin/accelnode ./\nCOPY . .", "bin", "leaves bin/accelnode out (bin)"},
		{"excluded by glob", "COPY *.go ./\nCOPY . .", "main.*", "leaves main.go out"},
		{"needed file excluded", "COPY . .", "*.go", "main.go, which make build reads, is left out"},
		{"needed file not copied", "COPY go.mod ./", "", "main.go, which make build reads, is not copied"},
		{"outside the context", "COPY ../x ./\nCOPY . .", "", "outside the build context"},
	} {
		t.Run(c.name, func(t *testing.T) {
			df, err := parseDockerfile("FROM golang AS build\nWORKDIR /src\n" + c.copies + "\nRUN make build\nFROM debian\nCOPY --from=build /src/bin/accelnode /usr/local/bin/\n")
			if err != nil {
				t.Fatal(err)
			}
			ig, err := parseIgnore(c.ignore)
			if err != nil {
				t.Fatal(err)
			}
			problems := checkContext(df, df.stage("build"), root, ig, needed)
			wantProblem(t, problems, c.want)
		})
	}
}

func TestDockerOutputChecksFail(t *testing.T) {
	df, err := parseDockerfile(goodDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	im, problems := checkImage(df, "1.26.8", testMake)
	if len(problems) > 0 {
		t.Fatalf("problems: %q", problems)
	}
	all := []string{"bin/accelnode", "bin/bench.wasm", "bin/examples/matmul.wasm", "bin/examples/cnn.wasm", "bin/mlp.onnx", ".deps/libonnxruntime.so.1"}
	for _, c := range []struct {
		name     string
		files    []string // what the build left
		produced []string // what it wrote to $(BIN)
		want     string
	}{
		{"all of it", all, all[:5], ""},
		{"no model", slices.Delete(slices.Clone(all), 4, 5), all[:4], "make build does not produce bin/mlp.onnx"},
		{"no examples", slices.Delete(slices.Clone(all), 2, 4), all[:2], "does not produce bin/examples/*.wasm"},
		{"no library", all[:5], all[:5], "does not produce .deps/libonnxruntime.so.1"},
		{"an output left behind", all, append(slices.Clone(all[:5]), "bin/extra.json"), "bin/extra.json, which the image does not carry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			problems := checkOutputs(im, func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }, c.produced)
			wantProblem(t, problems, c.want)
		})
	}
}

// wantProblem checks that some problem says want, or, for an empty want,
// that there are none.
func wantProblem(t *testing.T, problems []string, want string) {
	t.Helper()
	if want == "" {
		if len(problems) > 0 {
			t.Errorf("problems: %q", problems)
		}
		return
	}
	if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
		t.Errorf("no problem says %q: %q", want, problems)
	}
}
