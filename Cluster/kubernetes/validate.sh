#!/usr/bin/env bash
# Checks the Kubernetes manifests offline, with no cluster: strictly against the API schemas of two
# Kubernetes versions (bundled by kubernetes-validate), then across objects with check.py.
# kubernetes-validate is installed once, pinned, with pip --target into .build/ (no root needed, and
# Debian's externally managed python3 stays untouched). Cluster/test.sh runs this; so can you.
set -euo pipefail
cd "$(dirname "$0")/../.."

release=1.37.0
versions=(1.31.0 1.37.0)
target=.build/kubernetes-validate-$release
files=(Cluster/kubernetes/mnist.yaml Cluster/kubernetes/copy-model.yaml)

if ! PYTHONPATH=$target python3 -c "import kubernetes_validate, yaml" 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "kubernetes: python3 with pip is needed; run Cluster/setup.sh" >&2
        exit 1
    fi
    mkdir -p .build
    staging=$(mktemp -d .build/kubernetes-validate.XXXXXX)
    trap 'rm -rf "$staging"' EXIT
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$staging" "kubernetes-validate==$release"
    rm -rf "$target"
    mv "$staging" "$target"
fi

# With --quiet it prints only warnings (an unknown kind or apiVersion is just a warning) and errors:
# any output fails the check.
arguments=(--strict --quiet)
for version in "${versions[@]}"; do arguments+=(-k "$version"); done
status=0
report=$(PYTHONPATH=$target python3 -m kubernetes_validate "${arguments[@]}" "${files[@]}" 2>&1) || status=$?
if [ $status -ne 0 ] || [ -n "$report" ]; then
    echo "$report" >&2
    echo "kubernetes: the manifests do not validate against the Kubernetes schemas" >&2
    exit 1
fi
consistency=$(PYTHONPATH=$target python3 Cluster/kubernetes/check.py)
names=$(printf '%s\n' "${files[@]##*/}" | paste -sd, - | sed 's/,/ and /')
echo "kubernetes: $names valid against Kubernetes ${versions[0]%.*} and ${versions[-1]%.*} schemas; $consistency"
