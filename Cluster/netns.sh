#!/usr/bin/env bash
# A coordinator and N workers on separate network hosts of one Linux machine: each in its own network
# namespace, joined to the coordinator's namespace by a veth pair with its own addresses, so nothing
# goes over loopback. For testing what crosses a real network stack. Needs root (ip netns).
# Usage: Cluster/netns.sh WORKERS OUTPUT [mnist coordinator options, e.g. --data DIR --epochs 1]
# Environment: MNIST_BIN (default .build/release/mnist, else .build/debug/mnist).
# Everything it creates (namespaces, links, processes) is removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${1:?usage: Cluster/netns.sh WORKERS OUTPUT [coordinator options]}
output=${2:?usage: Cluster/netns.sh WORKERS OUTPUT [coordinator options]}
shift 2
bin=${MNIST_BIN:-}
if [ -z "$bin" ]; then
    bin=$PWD/.build/release/mnist
    [ -x "$bin" ] || bin=$PWD/.build/debug/mnist
fi
[ -x "$bin" ] || { echo "netns.sh: no mnist binary at $bin; build first" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "netns.sh: needs root for ip netns" >&2; exit 1; }
command -v ip >/dev/null || { echo "netns.sh: needs iproute2 (Cluster/setup.sh installs it)" >&2; exit 1; }

tag="mn$$"
coordinator_ns="$tag-c"
# CURVE keys for this run: the coordinator binds beyond loopback, so it needs them (or --insecure).
keys=$(mktemp -d)
"$bin" keygen "$keys" >/dev/null
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$keys"
    for ((i = 0; i < workers; i++)); do ip netns del "$tag-w$i" 2>/dev/null || true; done
    ip netns del "$coordinator_ns" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$coordinator_ns"
ip -n "$coordinator_ns" link set lo up
for ((i = 0; i < workers; i++)); do
    ns="$tag-w$i"
    subnet="10.213.$((i + 1))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$tag-c$i" netns "$coordinator_ns" type veth peer name "$tag-w$i" netns "$ns"
    ip -n "$coordinator_ns" addr add "$subnet.1/24" dev "$tag-c$i"
    ip -n "$ns" addr add "$subnet.2/24" dev "$tag-w$i"
    ip -n "$coordinator_ns" link set "$tag-c$i" up
    ip -n "$ns" link set "$tag-w$i" up
done

ip netns exec "$coordinator_ns" "$bin" coordinator --bind "tcp://*:5555" --keys "$keys" --workers "$workers" --output "$output" "$@" &
coordinator=$!
pids+=("$coordinator")
for ((i = 0; i < workers; i++)); do
    ip netns exec "$tag-w$i" "$bin" worker --connect "tcp://10.213.$((i + 1)).1:5555" --name "netns-w$i" --threads 1 \
        --keys "$keys" &
    pids+=($!)
done
status=0
wait "$coordinator" || status=$?
for pid in "${pids[@]:1}"; do wait "$pid" || status=$?; done
exit $status
