#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for pingkiller: the system packages the build and
# the tests need (apt-get, only what is missing), and a project virtual environment at
# $VENV made with a Python >= 3.11.  Nothing is pip-installed into a system interpreter.
#
#   scripts/bootstrap.sh VENV APT_PACKAGE...
#
# The interpreter is the first of $BASE_PYTHON, python3, python3.13, python3.12, python3.11
# that is >= 3.11; if there is none (Ubuntu 22.04's python3 is 3.10), python3.11 is installed.
set -euo pipefail
venv=$1
shift

apt_install() {
	[ $# -gt 0 ] || return 0
	if ! command -v apt-get >/dev/null; then
		echo "error: missing packages $*, and this is not a Debian/Ubuntu machine: install them by hand" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "error: missing packages $*: run as root, or install them: apt-get install $*" >&2
		exit 1
	fi
	echo "installing: $*"
	if [ -z "${_apt_updated:-}" ]; then
		apt-get update -qq
		_apt_updated=1
	fi
	local packages=() package
	for package in "$@"; do
		# Ubuntu ships bpftool in linux-tools, not in a package of its own.
		if [ "$package" = bpftool ] && ! apt-cache show bpftool >/dev/null 2>&1; then
			if apt-cache show "linux-tools-$(uname -r)" >/dev/null 2>&1; then
				packages+=(linux-tools-common "linux-tools-$(uname -r)")
			else
				packages+=(linux-tools-common linux-tools-generic)  # another kernel's is fine
			fi
		else
			packages+=("$package")
		fi
	done
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

missing() {
	for package in "$@"; do
		if [ "$package" = bpftool ]; then
			bpftool version >/dev/null 2>&1 || ls /usr/lib/linux-tools/*/bpftool >/dev/null 2>&1 \
				|| echo bpftool
		else
			dpkg -s "$package" >/dev/null 2>&1 || echo "$package"
		fi
	done
}

good_python() {
	"$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

pick_python() {
	for candidate in ${BASE_PYTHON:-} python3 python3.13 python3.12 python3.11; do
		path=$(command -v "$candidate" 2>/dev/null) || continue
		if good_python "$path"; then
			echo "$path"
			return 0
		fi
	done
	return 1
}

# shellcheck disable=SC2046
apt_install $(missing "$@")

libbpf=$(pkg-config --modversion libbpf 2>/dev/null || echo 0)
if [ "${libbpf%%.*}" -lt 1 ]; then
	echo "error: libbpf $libbpf is too old (pingkiller needs >= 1.0; Ubuntu 22.04 ships 0.5):" \
		"install libbpf-dev >= 1.0, or use the wheel (make wheel on another machine; libbpf is bundled)" >&2
	exit 1
fi

if [ -x "$venv/bin/python" ] && good_python "$venv/bin/python" \
	&& "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
	exit 0
fi

python=$(pick_python) || { apt_install python3.11 python3.11-venv python3.11-dev; python=$(pick_python); }
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
# Debian's and Ubuntu's interpreters need their -venv (ensurepip) and -dev (Python.h) packages.
case "$python" in
/usr/bin/*) apt_install $(missing "python$version-venv" "python$version-dev") ;;
esac
echo "creating $venv with $python (Python $version)"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
