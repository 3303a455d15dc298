package main

import (
	"bufio"
	"errors"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeCommands checks the commands the README shows: every file they
// name is one `make build` makes, and every flag is one their command has.
// (The README once named guest.wasm, ./data and mnist.onnx, which nothing
// makes.)
func TestReadmeCommands(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	// What make build makes, and the MNIST network make demo trains.
	built := []string{"bin/accelnode", "bin/bench.wasm", "bin/mlp.onnx", "bin/secure-ml", "bin/mnist.onnx", "bin/mnist-weights.ant"}
	for _, list := range []string{"EXAMPLES", "REACTORS"} {
		examples := regexp.MustCompile(`(?m)^` + list + `\s*:=\s*(.+)$`).FindSubmatch(makefile)
		if examples == nil {
			t.Fatalf("the Makefile lists no %s", list)
		}
		for _, e := range strings.Fields(string(examples[1])) {
			built = append(built, "bin/examples/"+e+".wasm")
		}
	}

	readme, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer readme.Close()
	var commands [][]string
	inShell := false
	sc := bufio.NewScanner(readme)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			inShell = line == "```sh"
		case inShell && strings.HasPrefix(line, "bin/accelnode "):
			line, _, _ = strings.Cut(line, "#")
			commands = append(commands, strings.Fields(line))
		}
	}
	if len(commands) < 10 {
		t.Fatalf("found %d commands in the README", len(commands))
	}
	helps := map[string]string{}
	written := map[string]bool{} // files an earlier command writes
	for _, cmd := range commands {
		sub := cmd[1]
		if _, ok := helps[sub]; !ok && !strings.HasPrefix(sub, "-") {
			stdout, stderr, err := accelnode(t, sub, "--help")
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("%s --help: %v", sub, err)
			}
			helps[sub] = stdout + stderr
		}
		line := strings.Join(cmd, " ")
		for i, arg := range cmd[2:] {
			if arg == "--" {
				break // the guest's own arguments follow
			}
			prev := cmd[1+i]
			if name, ok := strings.CutPrefix(arg, "--"); ok && !strings.HasPrefix(sub, "-") {
				name, _, _ = strings.Cut(name, "=")
				if !strings.Contains(helps[sub], "  -"+name+" ") && !strings.Contains(helps[sub], "  -"+name+"\n") {
					t.Errorf("%q: accelnode %s has no flag --%s", line, sub, name)
				}
			}
			switch {
			case prev == ">" || prev == "--plot":
				written[arg] = true
				continue
			case prev == "--from" || prev == "--compare" || prev == "--dir":
				path, _, _ := strings.Cut(arg, ":")
				// make build makes bin/, where guests may write.
				if _, err := os.Stat("../../" + path); err != nil && !written[path] && path != "bin" {
					t.Errorf("%q reads %s, which neither the repository nor an earlier command has", line, path)
				}
			}
			for _, f := range strings.Split(arg, "=") {
				if (strings.HasSuffix(f, ".wasm") || strings.HasSuffix(f, ".onnx") || strings.HasPrefix(f, "bin/")) && !slices.Contains(built, f) {
					t.Errorf("%q names %s, which make build does not make", line, f)
				}
			}
		}
	}
}
