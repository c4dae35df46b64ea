#!/usr/bin/env bash
# Installs Selenium for the browser tests once, pinned, with pip --target into .build/ (no root needed,
# and Debian's python3 stays untouched). The browser itself, Debian's chromium and chromium-driver,
# comes from `Cluster/setup.sh --test`. Cluster/test.sh runs this.
set -euo pipefail
cd "$(dirname "$0")/../.."

release=4.38.0
target=.build/selenium-$release
if PYTHONPATH=$target python3 -c "import selenium" 2>/dev/null; then
    echo "browser: selenium $release present"
    exit 0
fi
mkdir -p .build
staging=$(mktemp -d .build/selenium.XXXXXX)
trap 'rm -rf "$staging"' EXIT
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --target "$staging" "selenium==$release"
rm -rf "$target"
mv "$staging" "$target"
echo "browser: installed selenium $release into $target"
