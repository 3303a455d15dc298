#!/usr/bin/env bash
# fetch-onnxruntime.sh puts ONNX Runtime's shared library for linux/x64 in DIR
# (default .deps): it fetches the npm package onnxruntime-node at VERSION with
# npm pack, checks the tarball against the integrity hash the registry
# reports (and, where a pinned hash is given, against that too), and
# extracts package/bin/napi-v6/linux/x64/libonnxruntime.so.1. It does nothing
# when DIR already holds the library of that version.
set -euo pipefail

version=${ORT_VERSION:-1.30.0}
dir=${1:-.deps}
# The integrity of onnxruntime-node@1.30.0 as first fetched; a different
# tarball under the same version is refused.
pinned_1_30_0=sha512-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw==

lib=$dir/libonnxruntime.so.1
stamp=$dir/libonnxruntime.version
if [[ -f $lib && -f $stamp && $(cat "$stamp") == "$version" ]]; then
	exit 0
fi
case "$(uname -s)/$(uname -m)" in
Linux/x86_64) ;;
*)
	echo "fetch-onnxruntime: only linux/x86_64 is fetched; set ONNXRUNTIME_SHARED_LIBRARY_PATH to your own build" >&2
	exit 0
	;;
esac
command -v npm >/dev/null || {
	echo "fetch-onnxruntime: npm is needed to fetch onnxruntime-node (apt-get install npm)" >&2
	exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching onnxruntime-node@$version with npm pack"
(cd "$work" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tarball=$(ls "$work"/onnxruntime-node-*.tgz)

want=$(npm view "onnxruntime-node@$version" dist.integrity)
if [[ $version == 1.30.0 && $want != "$pinned_1_30_0" ]]; then
	echo "fetch-onnxruntime: the registry reports integrity $want for $version, not the pinned $pinned_1_30_0" >&2
	exit 1
fi
algo=${want%%-*}
got="$algo-$(openssl dgst "-$algo" -binary "$tarball" | base64 -w0)"
if [[ $got != "$want" ]]; then
	echo "fetch-onnxruntime: tarball integrity $got does not match $want" >&2
	exit 1
fi

tar -xzf "$tarball" -C "$work" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
mkdir -p "$dir"
mv "$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib"
echo "$version" >"$stamp"
echo "ONNX Runtime $version: $lib ($(du -h "$lib" | cut -f1), integrity $want)"
