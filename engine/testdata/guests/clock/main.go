// Command clock prints the wall-clock time it reads, in Unix seconds.
package main

import (
	"fmt"
	"time"
)

func main() { fmt.Println(time.Now().Unix()) }
