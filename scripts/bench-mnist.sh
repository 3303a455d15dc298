#!/usr/bin/env bash
# bench-mnist.sh measures training and inference of the seed's MNIST network
# side by side in one run, on this machine's cores: the node (examples/
# mnist-train and examples/mnist on each CPU backend and mode), gorgonia
# (mnist/gorgonia's BenchmarkTrain) and PyTorch (scripts/bench-mnist-pytorch.sh,
# which installs Debian's python3-torch). The figures go into
# docs/benchmarks.md. Run it after `make build`; it is not part of `make test`.
#
#   scripts/bench-mnist.sh [TRAIN_IMAGES]      (default 6000, one epoch, batch 64)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-6000}
bin=bin
data=.deps/mnist
threads=$(nproc)
echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $threads cores"
echo "# training: $n images, one epoch, batch 64, SGD with momentum 0.9"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for cfg in "ref strict" "ref-portable strict" "ort fast"; do
	set -- $cfg
	echo "## accelnode, $1, $2 mode"
	$bin/accelnode run --backend "$1" --determinism "$2" --dir "$data:/data:ro" --dir "$out:/out" \
		$bin/examples/mnist-train.wasm -- -train "$n" -epochs 1 -test 10000 -out /out 2>/dev/null | grep '^epoch 1'
	go run ./examples/mnist/model -weights "$out/mnist-weights.ant" -o "$out/mnist.onnx" >/dev/null
	$bin/accelnode run --backend "$1" --determinism "$2" --dir "$data:/data:ro" --model mnist="$out/mnist.onnx" \
		$bin/examples/mnist.wasm -- -batch 256 2>/dev/null | grep '^accuracy'
done

echo "## gorgonia $(grep -m1 'gorgonia.org/gorgonia ' mnist/gorgonia/go.mod | awk '{print $2}')"
(cd mnist/gorgonia && go test -run '^$' -bench 'BenchmarkTrain$' -benchtime "$((n / 64))x" -count 1 . | grep '^Benchmark')

echo "## PyTorch"
scripts/bench-mnist-pytorch.sh --data "$data" --threads "$threads" --train-images "$n" --epochs 1 --batch 64 --lr 0.05 --infer-batch 256
