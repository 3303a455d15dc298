// Command panic panics.
package main

func main() {
	panic("guest panic for testing")
}
