// Command files works on the guest file system: "files ls DIR" lists DIR
// and prints each regular file as name=contents, "files write FILE TEXT"
// writes TEXT to FILE.
package main

import (
	"fmt"
	"os"
	"path"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "files:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "ls":
		entries, err := os.ReadDir(args[1])
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(path.Join(args[1], e.Name()))
			if err != nil {
				return err
			}
			fmt.Printf("%s=%s\n", e.Name(), b)
		}
		return nil
	case len(args) == 3 && args[0] == "write":
		return os.WriteFile(args[1], []byte(args[2]), 0o644)
	}
	return fmt.Errorf("usage: files ls DIR | files write FILE TEXT")
}
