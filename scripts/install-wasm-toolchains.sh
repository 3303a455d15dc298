#!/bin/sh
# Installs Debian's toolchains for the C and Rust guests (examples/c,
# examples/rust, examples/foreign) where they are missing; does nothing
# otherwise:
#
#   C:    clang, lld (wasm-ld), wasi-libc, and compiler-rt's wasm32
#         builtins (libclang-rt-14-dev-wasm32)
#   Rust: Debian's rustc (/usr/bin/rustc, whatever rustc comes first on
#         PATH) and its wasm32-wasi standard library
#         (libstd-rust-dev-wasm32)
#
# It needs root (or sudo) and the distribution's package sources. Where it
# fails, it exits non-zero and says why; make deps goes on, `make build`
# leaves the C and Rust guests out, and their tests skip and say why.
set -eu

pkgs="clang lld wasi-libc libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32"

missing=
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-wasm-toolchains: apt-get is missing; install$missing by hand for the C and Rust guests" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-wasm-toolchains: not root and no sudo; install$missing by hand for the C and Rust guests" >&2
		exit 1
	fi
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # the package list splits on purpose
$sudo apt-get install -y --no-install-recommends $missing || {
	$sudo apt-get update
	$sudo apt-get install -y --no-install-recommends $missing
}
