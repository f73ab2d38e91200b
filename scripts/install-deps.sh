#!/usr/bin/env bash
# Installs what building or testing needs, only where it is missing: a fresh Debian machine with the
# Swift toolchain runs `make run` or `make test` with nothing installed by hand.
#
#   scripts/install-deps.sh build   what building and running need (make build, debug, run)
#   scripts/install-deps.sh test    that plus what the tests need (make test); the default
#
# Debian packages go through apt-get (as root, or through sudo). Python modules go through apt when
# python3 is the system interpreter, whose pip Debian 12 refuses (PEP 668, "externally managed"), and
# through pip otherwise (pyenv, a virtualenv), where apt's modules would not be seen.
set -euo pipefail

usage="usage: $0 [build|test]"
profile=${1:-test}
case "$profile" in
    build | test) ;;
    -h | --help)
        echo "$usage"
        exit 0
        ;;
    *)
        echo "$usage" >&2
        exit 2
        ;;
esac
[ $# -le 1 ] || {
    echo "$usage" >&2
    exit 2
}

apt_packages=(libmicrohttpd-dev zlib1g-dev libcrypt-dev pkg-config curl)
# Module to import, its Debian package, its PyPI name. The tests parse our exposition with
# prometheus_client, independently of us; the ops tests and `make prometheusrule` read YAML.
python_modules=()
if [ "$profile" = test ]; then
    apt_packages+=(prometheus jq openssl systemd util-linux procps)
    python_modules=(
        "prometheus_client python3-prometheus-client prometheus_client"
        "yaml python3-yaml PyYAML"
    )
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for package in "${apt_packages[@]}"; do
    installed "$package" || missing+=("$package")
done

pip_missing=()
if [ ${#python_modules[@]} -gt 0 ]; then
    if command -v python3 >/dev/null; then
        prefix=$(python3 -c 'import sys; print(sys.prefix)')
    else
        # No python3 at all: Debian's, which then takes its modules from apt as well.
        missing+=(python3)
        prefix=/usr
    fi
    for entry in "${python_modules[@]}"; do
        read -r module debian pypi <<<"$entry"
        python3 -c "import $module" 2>/dev/null && continue
        if [ "$prefix" = /usr ]; then
            installed "$debian" || missing+=("$debian")
        else
            pip_missing+=("$pypi")
        fi
    done
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]} with apt-get" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "install-deps: need root or sudo to install ${missing[*]}" >&2
            exit 1
        }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ${#pip_missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${pip_missing[*]} with pip for $(command -v python3) ($prefix)" >&2
    python3 -m pip install -q "${pip_missing[@]}"
fi

# A module installed above but still not importable means python3 is not the interpreter it went to.
for entry in "${python_modules[@]}"; do
    read -r module debian pypi <<<"$entry"
    python3 -c "import $module" 2>/dev/null || {
        echo "install-deps: $(command -v python3) still cannot import $module" \
            "(install $debian with apt, or $pypi with pip, for that interpreter)" >&2
        exit 1
    }
done
