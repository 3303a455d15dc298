# python-deps.sh is sourced by the bench scripts that set the node beside a
# Python library. It defines:
#
#   pick MODULE...      prints the first interpreter ($PYTHON, python3,
#                       /usr/bin/python3) that imports every MODULE. Debian's
#                       packages go to /usr/bin/python3, which need not be the
#                       python3 on PATH.
#   install PACKAGE...  installs Debian packages with apt-get (through sudo
#                       when not root); it says why and returns 2 where it
#                       cannot.
#
# Messages start with $who, the sourcing script's name.
who=${who:-$(basename "$0" .sh)}

pick() {
	local py imports
	imports=$(IFS=,; echo "$*")
	for py in ${PYTHON:+"$PYTHON"} python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $imports" >/dev/null 2>&1; then
			echo "$py"
			return 0
		fi
	done
	return 1
}

install() {
	local as=()
	if [ "$(id -u)" != 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "$who: installing $* needs root: not root, and no sudo" >&2
			return 2
		fi
		as=(sudo)
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "$who: no apt-get to install $* with" >&2
		return 2
	fi
	echo "$who: installing $* with apt-get" >&2
	if ! "${as[@]}" apt-get update >&2 ||
		! "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
		echo "$who: apt-get could not install $*" >&2
		return 2
	fi
}
