// Command echo copies stdin to stdout, then writes its arguments and the
// environment variables named ECHO_* to stderr, one per line.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	for i, a := range os.Args {
		fmt.Fprintf(os.Stderr, "arg%d=%s\n", i, a)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ECHO_") {
			fmt.Fprintln(os.Stderr, kv)
		}
	}
}
