#!/usr/bin/env bash
# onnx-node-tests.sh writes the official ONNX backend node test cases, one
# folder per case (model.onnx and test_data_set_N/{input,output}_K.pb), with
# the generators that the onnx Python package ships:
#
#   scripts/onnx-node-tests.sh [DIR]     (default .deps/onnx-node-tests)
#
# models' TestONNXNodeTests runs them on every backend; make test runs this
# script first. Where no python3 imports onnx and numpy, it installs
# Debian's python3-onnx with apt-get (through sudo when not root), and
# exits 2 with the reason where that is impossible; the test then skips,
# saying so.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$(cd "$here/.." && pwd)/.deps/onnx-node-tests}

. "$here/python-deps.sh"

if ! py=$(pick onnx numpy); then
	if ! install python3-onnx; then
		echo "onnx-node-tests: skipped: no onnx package for python3: install python3-onnx, or set PYTHON" >&2
		exit 2
	fi
	if ! py=$(pick onnx numpy); then
		echo "onnx-node-tests: python3-onnx is installed, yet no python3 imports onnx and numpy" >&2
		exit 2
	fi
fi

# Written afresh each time, so that no case of another onnx version stays.
rm -rf "$out"
mkdir -p "$out"
# onnx 1.12's generators use numpy aliases that numpy 1.24 removed
# (np.float, np.int, np.bool, np.object); they are put back first.
"$py" - "$out" <<'PY'
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
for name, alias in (("float", float), ("int", int), ("bool", bool), ("object", object)):
    if name not in np.__dict__:
        setattr(np, name, alias)

import onnx
from onnx.backend.test.cmd_tools import main

sys.argv = ["onnx.backend.test.cmd_tools", "generate-data", "-o", sys.argv[1]]
main()
with open(sys.argv[-1] + "/VERSION", "w") as f:
    f.write("onnx %s, numpy %s\n" % (onnx.__version__, np.__version__))
PY
echo "onnx-node-tests: $(ls "$out/node" | wc -l) node cases in $out/node ($(cat "$out/VERSION"))" >&2
