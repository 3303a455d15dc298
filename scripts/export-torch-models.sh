#!/usr/bin/env bash
# export-torch-models.sh exports the PyTorch models of
# scripts/export_torch_models.py to ONNX, with an input and PyTorch's output
# for it, as the shared fixtures under testdata/models. It is not part of
# `make test`: the fixtures are committed, and the tests read them.
#
#   scripts/export-torch-models.sh [--out DIR] [NAME...]
#
# Where no python3 imports torch, torchvision and onnx, it installs Debian's
# python3-torch, python3-torchvision and python3-onnx with apt-get (through sudo when not
# root), and exits 2 with the reason where that is impossible. Set PYTHON to
# use another interpreter that has them; the versions that made a fixture
# are written beside it (NAME.json), and a different version may export a
# different graph.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

. "$here/python-deps.sh"

if ! py=$(pick torch torchvision onnx); then
	if ! install python3-torch python3-torchvision python3-onnx; then
		echo "export-torch-models: skipped: no PyTorch to export with: install PyTorch, torchvision and onnx for python3, or set PYTHON" >&2
		exit 2
	fi
	if ! py=$(pick torch torchvision onnx); then
		echo "export-torch-models: python3-torch is installed, yet no python3 imports torch, torchvision and onnx" >&2
		exit 2
	fi
fi
exec "$py" "$here/export_torch_models.py" "$@"
