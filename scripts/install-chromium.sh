#!/bin/sh
# Installs Debian's chromium, which the web page's browser tests drive
# (server/web), where /usr/bin/chromium is missing; does nothing otherwise.
# It needs root and the distribution's package sources; where it fails, the
# browser tests skip and say why.
set -eu
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-chromium: apt-get is missing; install chromium by hand for the browser tests" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends chromium || {
	$sudo apt-get update
	$sudo apt-get install -y --no-install-recommends chromium
}
