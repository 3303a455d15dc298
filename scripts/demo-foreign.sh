#!/bin/sh
# demo-foreign.sh BIN: make demo's step for the C and Rust guests
# (examples/c, examples/rust) that make build made where the toolchains
# are (scripts/install-wasm-toolchains.sh): the Rust guest classifies test
# digits with the node's model mnist through the accel ABI, with
# model_run and then with single host calls on the weights the demo
# trained, and the C guest does the same through wasi-nn. All three print
# what the Go guest examples/mnist printed. Then wasinn-classify, written
# as WasmEdge's wasi-nn examples are, scores an image on the MobileNetV2 of
# testdata/models. The MNIST guests read the files uncompressed, from
# BIN/mnist-raw.
set -eu
bin=${1:-bin}
n=2000
if [ ! -f "$bin/examples/mnist-accel.wasm" ] && [ ! -f "$bin/examples/mnist-wasinn.wasm" ]; then
	echo "demo-foreign: no C or Rust guests in $bin/examples (scripts/install-wasm-toolchains.sh installs their toolchains); skipped"
	exit 0
fi
mkdir -p "$bin/mnist-raw"
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
	[ -f "$bin/mnist-raw/$f" ] || gunzip -c ".deps/mnist/$f.gz" >"$bin/mnist-raw/$f"
done
run="$bin/accelnode run --dir $bin/mnist-raw:/data:ro"
if [ -f "$bin/examples/mnist-accel.wasm" ]; then
	echo "+ the Rust guest, model_run"
	$run --model "mnist=$bin/mnist.onnx" "$bin/examples/mnist-accel.wasm" -- -n $n
	echo
	echo "+ the Rust guest, single host calls"
	$run --dir "$bin:/w:ro" "$bin/examples/mnist-accel.wasm" -- -n $n -mode ops -weights /w/mnist-weights.ant
	echo
fi
if [ -f "$bin/examples/mnist-wasinn.wasm" ]; then
	if "$bin/accelnode" run --help 2>&1 | grep -q -- -nn-graph; then
		echo "+ the C guest, wasi-nn"
		$run --nn-graph "mnist=$bin/mnist.onnx" "$bin/examples/mnist-wasinn.wasm" -- -n $n
	else
		echo "demo-foreign: this accelnode has no --nn-graph, so no wasi-nn; the C guest is skipped"
	fi
fi
if [ -f "$bin/examples/wasinn-classify.wasm" ] && [ -f testdata/models/mobilenet_v2.onnx ]; then
	echo
	echo "+ a guest written as WasmEdge's wasi-nn examples are, on MobileNetV2 (untrained weights)"
	"$bin/accelnode" run --nn-preload default:ONNX:CPU:testdata/models/mobilenet_v2.onnx "$bin/examples/wasinn-classify.wasm" -- default seed:1
fi
