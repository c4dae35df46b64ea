#!/usr/bin/env bash
# The main job on a fresh machine: system packages, the real MNIST (verified), a release build, training.
# Usage: Cluster/run.sh [mnist train options]   (the model is written to model.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."

Cluster/setup.sh
swift build -c release --product mnist
.build/release/mnist fetch
exec .build/release/mnist train "$@"
