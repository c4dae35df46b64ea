#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, the real MNIST (verified), build, tests.
# Usage: Cluster/test.sh [extra `swift test` arguments, e.g. --filter MNISTTests]
set -euo pipefail
cd "$(dirname "$0")/.."

Cluster/setup.sh --test
swift build --build-tests
# End-to-end tests train on the real MNIST: fetch it into the default cache (a no-op when verified).
.build/debug/mnist fetch
# Style: swift format (it ships with the toolchain) with the repository's .swift-format, strictly.
swift format lint --strict -r Sources Tests Fuzz
echo "lint: swift format reports nothing"
# libFuzzer with AddressSanitizer on the message decoder and on the image, IDX and download-report readers, 30 s each
# (the XCTest fuzz tests of every reader run with the rest below).
Fuzz/run.sh 60
# The Kubernetes manifests, offline: API schemas and cross-object consistency (installs a pinned
# kubernetes-validate into .build/ the first time).
Cluster/kubernetes/validate.sh
# Selenium for the browser tests (Chromium itself comes from setup.sh --test).
Tests/Browser/install.sh

log=$(mktemp)
started=$(mktemp)  # Its time stamp marks the start of the tests.
trap 'rm -f "$log" "$started"' EXIT
status=0
swift test "$@" 2>&1 | tee "$log" || status=$?
# Tests write into their own temporary folders: a model or checkpoint left here would be found by the
# next `mnist train` in this folder.
left=$(find . -maxdepth 1 -name '*.safetensors' -newer "$started" | sort)
if [ -n "$left" ]; then
    echo "tests left files in $(pwd): $left" >&2
    status=1
fi
# One plain closing line, whatever the runner printed above it.
summary=$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1 || true)
if [ -n "$summary" ]; then
    total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
    failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
    skipped=$(grep -c "' skipped" "$log" || true)
    echo "tests: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit $status
