#!/usr/bin/env bash
# Installs the system packages this project needs, only those missing, and says what it did.
# Safe to run again and again. Uses sudo when not root. Needs a Debian-family system with apt-get.
# Usage: Cluster/setup.sh [--test]   (--test adds what only the tests need)
set -euo pipefail

# C libraries (found by pkg-config at build time), the curl program with the CA certificates it checks
# servers against (`mnist fetch` downloads with it), python3 with pip (the offline MNIST source), and
# iproute2 (network-namespace tests of the coordinator and workers).
packages=(pkg-config libzmq3-dev libopenblas-dev zlib1g-dev libpng-dev libturbojpeg0-dev curl ca-certificates iproute2)
if ! python3 -m pip --version >/dev/null 2>&1; then
    packages+=(python3 python3-pip)
fi
# The tests run PROTOCOL.md's Python worker skeleton, which needs pyzmq and numpy.
if [ "${1:-}" = "--test" ] && ! python3 -c "import zmq, numpy" >/dev/null 2>&1; then
    packages+=(python3-zmq python3-numpy)
fi
# The browser tests drive Debian's Chromium with Selenium (installed by Tests/Browser/install.sh).
if [ "${1:-}" = "--test" ]; then
    packages+=(chromium chromium-driver)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all system packages present (${packages[*]})"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "setup: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
    sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: installed ${missing[*]}"
