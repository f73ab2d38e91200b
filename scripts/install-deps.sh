#!/usr/bin/env bash
# Installs what building and testing need, only where it is missing: a fresh Debian machine with the
# Swift toolchain runs `make test` with nothing installed by hand.
set -euo pipefail

apt_packages=(libmicrohttpd-dev zlib1g-dev libcrypt-dev pkg-config prometheus curl systemd jq openssl util-linux procps)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python's prometheus_client parses our exposition independently of us in the tests.
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    echo "install-deps: installing prometheus_client from PyPI" >&2
    python3 -m pip install -q prometheus_client
fi
