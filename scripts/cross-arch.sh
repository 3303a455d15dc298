#!/bin/sh
# The cross-architecture proof of guest determinism: the same guests run on
# amd64 natively and on arm64 under qemu-user (wazero compiles arm64 code
# there, so NaNs come out as an arm64 CPU makes them), with
# --guest-determinism strict and off.
#
#   nans    (engine/testdata/guests/nans) prints the bits of NaNs made in
#           many ways and a final `sha256 <hex>` line; the sha256 of its
#           stdout is compared.
#   matmul  (examples/matmul -n 32 -reps 1) makes no NaNs; the units of its
#           own instructions (guest_units) are compared.
#
# It prints a table (arch, mode, stdout sha256 of nans, guest units of
# nans and matmul) and a verdict. It exits 1 if, under strict, the sha256
# or the guest units differ between the architectures; under off it only
# says whether the sha256 differs (amd64 makes negative NaNs, 0xfff8...,
# arm64 positive ones, 0x7ff8...). It exits 2, saying why, where it cannot
# run: qemu-user-static, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross
# missing and not installable (apt-get, as root or through sudo).
#
# The binaries and outputs go to $OUT (bin/cross-arch by default). The
# first arm64 build (cgo, for the ort backend) takes minutes.
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${OUT:-bin/cross-arch}
SYSROOT=/usr/aarch64-linux-gnu

say() { echo "cross-arch: $*"; }
cannot() { echo "cross-arch: cannot run: $*" >&2; exit 2; }

# 1. Tools, from the distribution where they are missing.
pkgs="qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
missing=
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	command -v apt-get >/dev/null 2>&1 || cannot "apt-get is missing; install$missing by hand"
	if [ "$(id -u)" = 0 ]; then
		sudo=
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		cannot "installing$missing needs root or sudo without a password"
	fi
	say "installing$missing"
	if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing; } >"${TMPDIR:-/tmp}/cross-arch-apt.log" 2>&1; then
		tail -n 5 "${TMPDIR:-/tmp}/cross-arch-apt.log" >&2
		cannot "apt-get could not install$missing"
	fi
fi
command -v qemu-aarch64-static >/dev/null 2>&1 || cannot "qemu-aarch64-static is not on PATH"
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || cannot "aarch64-linux-gnu-gcc is not on PATH"
[ -d "$SYSROOT" ] || cannot "$SYSROOT (libc6-dev-arm64-cross) is missing"
command -v "$GO" >/dev/null 2>&1 || cannot "$GO is not on PATH"
[ "$($GO env GOHOSTARCH)" = amd64 ] || cannot "the native side must be amd64, not $($GO env GOHOSTARCH)"

# 2. The node for both architectures, and the guests.
mkdir -p "$OUT"
say "building accelnode for linux/amd64"
CGO_ENABLED=1 "$GO" build -o "$OUT/accelnode-linux-amd64" ./cmd/node
say "building accelnode for linux/arm64 (cgo, $(aarch64-linux-gnu-gcc -dumpversion))"
GOOS=linux GOARCH=arm64 CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc "$GO" build -o "$OUT/accelnode-linux-arm64" ./cmd/node
say "building the guests nans and matmul"
GOOS=wasip1 GOARCH=wasm "$GO" build -o "$OUT/nans.wasm" ./engine/testdata/guests/nans
GOOS=wasip1 GOARCH=wasm "$GO" build -o "$OUT/matmul.wasm" ./examples/matmul

# 3. Each guest on each architecture in each mode. A guest's argv[0] is the
# module's path as given, which the guest's runtime copies, so the units
# depend on $OUT's path (by a few thousand between /tmp/x and bin/x); both
# architectures run the same paths.
node() { # arch, then the node's arguments
	arch=$1
	shift
	case $arch in
	amd64) "$OUT/accelnode-linux-amd64" "$@" ;;
	arm64) qemu-aarch64-static -L "$SYSROOT" "$OUT/accelnode-linux-arm64" "$@" ;;
	esac
}
guest_units() { # the guest_units of a run's "guest finished" line
	sed -n 's/.*guest finished.* guest_units=\([0-9][0-9]*\).*/\1/p' "$1" | tail -n 1
}
run() { # guest arch mode [-- args]
	g=$1 arch=$2 mode=$3
	shift 3
	base="$OUT/$g-$arch-$mode"
	if ! node "$arch" run --cache-dir off --backend ref --clock deterministic \
		--guest-determinism "$mode" "$OUT/$g.wasm" "$@" >"$base.stdout" 2>"$base.stderr"; then
		cat "$base.stderr" >&2
		say "FAIL: $g on $arch with --guest-determinism $mode did not finish"
		exit 1
	fi
	u=$(guest_units "$base.stderr")
	if [ -z "$u" ]; then
		cat "$base.stderr" >&2
		say "FAIL: $g on $arch with --guest-determinism $mode logged no guest_units"
		exit 1
	fi
	echo "$u" >"$base.units"
}

for mode in strict off; do
	for arch in amd64 arm64; do
		say "running on $arch with --guest-determinism $mode"
		run nans "$arch" "$mode"
		run matmul "$arch" "$mode" -- -n 32 -reps 1
	done
done

# 4. The table and the verdict.
sum() { sha256sum "$OUT/nans-$1-$2.stdout" | cut -d' ' -f1; }
units() { cat "$OUT/$1-$2-$3.units"; }
echo
printf '%-6s %-7s %-64s %12s %12s\n' arch mode "nans stdout sha256" "nans units" "matmul units"
for mode in strict off; do
	for arch in amd64 arm64; do
		printf '%-6s %-7s %-64s %12s %12s\n' "$arch" "$mode" "$(sum "$arch" "$mode")" \
			"$(units nans "$arch" "$mode")" "$(units matmul "$arch" "$mode")"
	done
done
echo

fail=
if [ "$(sum amd64 strict)" != "$(sum arm64 strict)" ]; then
	say "strict: the nans output differs between amd64 and arm64:"
	diff "$OUT/nans-amd64-strict.stdout" "$OUT/nans-arm64-strict.stdout" || true
	fail=1
else
	say "strict: the nans output is the same on amd64 and arm64 ($(grep -c . "$OUT/nans-amd64-strict.stdout") lines)"
fi
for g in nans matmul; do
	if [ "$(units "$g" amd64 strict)" != "$(units "$g" arm64 strict)" ]; then
		say "strict: $g's guest units differ: $(units "$g" amd64 strict) on amd64, $(units "$g" arm64 strict) on arm64"
		fail=1
	else
		say "strict: $g's guest units are the same on amd64 and arm64: $(units "$g" amd64 strict)"
	fi
done
if [ "$(sum amd64 off)" != "$(sum arm64 off)" ]; then
	n=$(diff "$OUT/nans-amd64-off.stdout" "$OUT/nans-arm64-off.stdout" | grep -c '^<' || true)
	say "off (reported, not checked): the nans output differs between amd64 and arm64 in $n lines (the sha256 line among them):"
	diff "$OUT/nans-amd64-off.stdout" "$OUT/nans-arm64-off.stdout" || true
else
	say "off (reported, not checked): the nans output is the same on amd64 and arm64"
fi
if [ -n "$fail" ]; then
	say "FAIL"
	exit 1
fi
say "PASS"
