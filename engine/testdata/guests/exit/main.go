// Command exit exits with the code given as its first argument.
package main

import (
	"os"
	"strconv"
)

func main() {
	code, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	os.Exit(code)
}
