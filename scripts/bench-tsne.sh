#!/usr/bin/env bash
# bench-tsne.sh embeds the first N MNIST digits with t-SNE side by side in one
# run, on this machine's cores: the node (examples/tsne-mnist: PCA to 50,
# perplexity 30, Barnes-Hut θ = 0.5, 1,000 iterations, scikit-learn's
# schedule) on ref, ref-portable and ref with one thread, then scikit-learn's
# PCA and TSNE with the same parameters (scripts/bench-tsne-sklearn.sh, which
# installs Debian's python3-sklearn). Every row prints its time, KL divergence,
# trustworthiness at 10 and 10-NN accuracy; the node's rows also the
# embedding's hash, the same on each in strict mode. The figures go into
# docs/benchmarks.md. Run it after `make build`; it is not part of `make test`.
#
#   scripts/bench-tsne.sh [N]      (default 10000; at most 70000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
bin=bin
data=.deps/mnist
echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "# $n digits: PCA to 50, perplexity 30, theta 0.5, 1000 iterations"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for cfg in "ref 0" "ref-portable 0" "ref 1"; do
	set -- $cfg
	echo "## accelnode, $1, strict mode, threads $2 (0: one per core)"
	start=$(date +%s.%N)
	$bin/accelnode run --backend "$1" --threads "$2" --dir "$data:/data:ro" --dir "$out:/out" \
		$bin/examples/tsne-mnist.wasm -- -data /data -n "$n" -out "/out/tsne-$1-$2.csv" 2>/dev/null | grep -E '^(tsne|embedding)'
	echo "wall $(echo "$(date +%s.%N) - $start" | bc) s, node start and guest compilation included"
done
echo "## scikit-learn"
scripts/bench-tsne-sklearn.sh --data "$data" -n "$n" --out "$out/tsne-sklearn.csv"
