#!/usr/bin/env bash
# Distributed training over SSH: workers on the hosts of a hostfile, the coordinator here.
# Usage: Cluster/ssh.sh HOSTFILE [mnist coordinator options, e.g. --epochs 3]
#   HOSTFILE: one host per line ("user@host" works; "host slots=2" starts two workers there); # comments.
# Environment: MNIST_BIN (path of `mnist` on the remote hosts, default: this machine's path of it),
#   MNIST_PORT (default 5555), MNIST_ADVERTISE (the address workers connect to, default: `hostname -f`),
#   MNIST_SSH (the ssh command and its options, default "ssh -o BatchMode=yes"; e.g. add "-p 2222 -i key"),
#   MNIST_KEYS (the CURVE keys folder here, default ~/.config/mnist/keys: made by `mnist keygen` if
#   missing), MNIST_REMOTE_KEYS (where each host gets coordinator.public and worker.secret, default
#   .config/mnist/keys under the remote home). Traffic is encrypted; only holders of the worker key join.
# The remote hosts need the `mnist` binary and its shared libraries, not the data. Everything started is
# stopped on exit, Ctrl-C included; workers also leave by themselves when the coordinator goes silent.
# A host that drops out costs nothing but its share of the speed (its data moves to the others); start
# `mnist worker --connect tcp://ADVERTISE:PORT` anywhere to add one mid-run. An interrupted run keeps a
# checkpoint beside --output: the same command continues it to the same model file.
set -euo pipefail
cd "$(dirname "$0")/.."

hostfile=${1:?usage: Cluster/ssh.sh HOSTFILE [coordinator options]}
shift
local_bin=${MNIST_LOCAL_BIN:-$PWD/.build/release/mnist}
remote_bin=${MNIST_BIN:-$local_bin}
port=${MNIST_PORT:-5555}
advertise=${MNIST_ADVERTISE:-$(hostname -f)}
endpoint="tcp://$advertise:$port"
read -r -a ssh <<<"${MNIST_SSH:-ssh -o BatchMode=yes}"
keys=${MNIST_KEYS:-$HOME/.config/mnist/keys}
remote_keys=${MNIST_REMOTE_KEYS:-.config/mnist/keys}

hosts=()
while read -r host rest; do
    [[ -z "$host" || "$host" == \#* ]] && continue
    slots=1
    [[ "$rest" =~ slots=([0-9]+) ]] && slots=${BASH_REMATCH[1]}
    for ((i = 0; i < slots; i++)); do hosts+=("$host"); done
done <"$hostfile"
[ ${#hosts[@]} -gt 0 ] || { echo "ssh.sh: no hosts in $hostfile" >&2; exit 1; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for host in $(printf '%s\n' "${hosts[@]}" | sort -u); do
        "${ssh[@]}" "$host" "pkill -f 'mnist worker --connect $endpoint'" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

"$local_bin" keygen "$keys" >/dev/null
echo "ssh.sh: ${#hosts[@]} workers on $(printf '%s\n' "${hosts[@]}" | sort -u | tr '\n' ' ')-> $endpoint"
# Each host gets the coordinator's public key and the worker secret, never the coordinator's secret.
for host in $(printf '%s\n' "${hosts[@]}" | sort -u); do
    for file in coordinator.public worker.secret; do
        "${ssh[@]}" "$host" "umask 077 && mkdir -p $remote_keys && cat >$remote_keys/$file" <"$keys/$file"
    done
done
for host in "${hosts[@]}"; do
    "${ssh[@]}" "$host" "exec $remote_bin worker --connect $endpoint --keys $remote_keys" &
    pids+=($!)
done
"$local_bin" coordinator --bind "tcp://*:$port" --keys "$keys" --workers "${#hosts[@]}" "$@"
