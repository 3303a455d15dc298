#!/usr/bin/env bash
# bench-mnist-pytorch.sh measures PyTorch training and inference of the MNIST
# CNN on this machine's cores, as a reference for the node's own figures. It is
# not part of `make test`.
#
#   scripts/bench-mnist-pytorch.sh [--data DIR] [--threads N] [--train-images N]
#       [--epochs E] [--batch 64] [--lr 0.05] [--infer-batch 256]
#       [--device cpu|cuda] [--json]
#
# DIR holds the four MNIST IDX .gz files (default .deps/mnist). The arguments go
# to scripts/bench-mnist-pytorch.py; --help lists them.
#
# Where no python3 imports torch and numpy, it installs Debian's python3-torch,
# python3-numpy and libopenblas0-pthread with apt-get (through sudo when not
# root), and exits 2 where that is impossible. Set PYTHON to use another
# interpreter that has PyTorch.
#
# Two settings keep the figure from measuring the machine's setup instead of
# PyTorch; the .py prints both:
#  - Debian's PyTorch calls the system BLAS for its dense layers, and Debian's
#    default one is the slow reference BLAS: where Debian's PyTorch runs without
#    OpenBLAS, it installs libopenblas0-pthread (and goes on with a warning
#    where it cannot).
#  - glibc hands large freed tensors back to the kernel and takes them anew on
#    the next batch, page fault by page fault: on the 2-core dev machine that
#    made 6000 training images cost about 230,000 page faults instead of 1,600,
#    and training ran at a third, inference at a seventh of the speed it had
#    with memory reused. It sets MALLOC_MMAP_THRESHOLD_ and
#    MALLOC_TRIM_THRESHOLD_ (unless they are set) so freed memory is reused, as
#    the caching allocators that PyTorch's CPU tuning advice names do.
#    PLAIN_MALLOC=1 keeps glibc's defaults.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

. "$here/python-deps.sh"

if ! py=$(pick torch numpy); then
	if ! install python3-torch python3-numpy libopenblas0-pthread; then
		echo "bench-mnist-pytorch: no PyTorch to measure: install PyTorch and NumPy for python3, or set PYTHON" >&2
		exit 2
	fi
	if ! py=$(pick torch numpy); then
		echo "bench-mnist-pytorch: python3-torch is installed, yet no python3 imports torch and numpy" >&2
		exit 2
	fi
elif "$py" -c 'import sys, torch; sys.exit(not torch.__file__.startswith("/usr/lib/python3/"))' &&
	command -v dpkg-query >/dev/null 2>&1 &&
	! dpkg-query -W -f='${db:Status-Abbrev}\n' 'libopenblas0*' 2>/dev/null | grep -q '^ii'; then
	install libopenblas0-pthread || echo "bench-mnist-pytorch: going on with the reference BLAS" >&2
fi

if [ -z "${PLAIN_MALLOC:-}" ]; then
	export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432}
	export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-4294967296}
fi
exec "$py" "$here/bench-mnist-pytorch.py" "$@"
