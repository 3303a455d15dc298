#!/usr/bin/env bash
# bench-tsne-sklearn.sh embeds MNIST digits with scikit-learn's PCA and
# Barnes-Hut t-SNE on this machine's cores: the reference that the node's own
# t-SNE of the digits (examples/tsne-mnist) is set beside. It is not part of
# `make test`.
#
#   scripts/bench-tsne-sklearn.sh [--data DIR] [-n N] [--pca-solver randomized|full]
#       [--jobs J] [--out EMBEDDING.csv] [--trust auto|sklearn|chunked]
#
# DIR holds the four MNIST IDX .gz files (default .deps/mnist). The points are
# the first N (default 10000) of the 60,000 training digits followed by the
# 10,000 test digits. The arguments go to scripts/bench-tsne-sklearn.py;
# --help lists them. It ends with one line to parse:
#
#   sklearn: n=10000 cores=2 pca_s=.. tsne_s=.. total_s=.. kl=.. trust10=.. knn10=..
#
# --out writes the embedding as x,y,label, which `accelnode plot` draws.
#
# Where no python3 imports sklearn and numpy, it installs Debian's
# python3-sklearn and python3-numpy with apt-get (through sudo when not root),
# and exits 2 where that is impossible. Set PYTHON to use another interpreter
# that has scikit-learn.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

. "$here/python-deps.sh"

if ! py=$(pick sklearn numpy); then
	if ! install python3-sklearn python3-numpy; then
		echo "bench-tsne-sklearn: no scikit-learn to measure: install scikit-learn and NumPy for python3, or set PYTHON" >&2
		exit 2
	fi
	if ! py=$(pick sklearn numpy); then
		echo "bench-tsne-sklearn: python3-sklearn is installed, yet no python3 imports sklearn and numpy" >&2
		exit 2
	fi
fi

exec "$py" "$here/bench-tsne-sklearn.py" "$@"
