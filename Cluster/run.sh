#!/usr/bin/env bash
# The main job on a fresh machine: system packages, the real MNIST (verified), a release build, training.
# Usage: Cluster/run.sh [mnist train options]   (the model is written to model.safetensors)
# Trains on this node with a coordinator and MNIST_WORKERS (default 2) local worker processes over
# ZeroMQ; MNIST_WORKERS=0 trains in one process without sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

Cluster/setup.sh
swift build -c release --product mnist
.build/release/mnist fetch
exec .build/release/mnist train --workers "${MNIST_WORKERS:-2}" "$@"
