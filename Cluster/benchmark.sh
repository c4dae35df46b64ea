#!/usr/bin/env bash
# Benchmarks (figures, not tests): the engine's throughput, the default configuration's time to 99.0%,
# and one epoch of distributed training with 1, 2 and 4 local workers against the single process.
# Usage: Cluster/benchmark.sh [extra mnist train options, e.g. --model classic]
set -euo pipefail
cd "$(dirname "$0")/.."

Cluster/setup.sh >/dev/null
swift build -c release --product mnist >/dev/null
bin=.build/release/mnist
$bin fetch >/dev/null

echo "== engine"
$bin bench --model classic --to-accuracy 0.99
$bin bench --model fast | sed -n 2,3p

echo
echo "== one epoch, single process vs local workers over ZeroMQ (ipc:// in the temporary folder)"
printf '%-10s %12s %10s %10s  %s\n' workers images/s seconds test% "per step"
out=$(mktemp)
trap 'rm -f "$out" /tmp/mnist-bench-$$.safetensors' EXIT
for workers in 0 1 2 4; do
    $bin train --workers "$workers" --epochs 1 --log-format json --output /tmp/mnist-bench-$$.safetensors "$@" \
        >"$out" 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
    line=$(tail -n 1 "$out")
    rate=$(echo "$line" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["images_per_second"]))')
    seconds=$(echo "$line" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["seconds"], 1))')
    accuracy=$(echo "$line" | python3 -c 'import json,sys; print(round(100 * json.load(sys.stdin)["test_accuracy"], 2))')
    split=$(grep -h "per step:" "$out.err" | sed 's/.*per step: //' || true)
    compute=$(grep -h "computed .* steps" "$out.err" | sed -E 's/.*computed [0-9]+ steps, ([0-9.]+) ms.*/\1/' | paste -sd/ - || true)
    between=$(grep -h "computed .* steps" "$out.err" | sed -E 's/.*; ([0-9.]+) ms between steps.*/\1/' | paste -sd/ - || true)
    label=$([ "$workers" = 0 ] && echo "none" || echo "$workers")
    printf '%-10s %12s %10s %10s  %s\n' "$label" "$rate" "$seconds" "$accuracy" \
        "${split:+$split; worker compute ms/step: $compute, between steps: $between}"
    rm -f "$out.err"
done

echo
echo "== watching costs nothing measurable: images/s of one epoch with 2 local workers, interleaved rounds"
printf '%-28s %s\n' "" "images/s per round"
declare -A rates
for round in 1 2 3; do
    for mode in plain dashboard trace; do
        case $mode in
            plain) extra=() ;;
            dashboard) extra=(--dashboard 0) ;;  # no page open: the figure of a run nobody watches
            trace) extra=(--trace "/tmp/mnist-bench-$$.json") ;;
        esac
        rate=$($bin train --workers 2 --epochs 1 --log-format json --output /tmp/mnist-bench-$$.safetensors \
            "${extra[@]}" "$@" 2>/dev/null | tail -n 1 \
            | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["images_per_second"]))')
        rates[$mode]="${rates[$mode]:-} $rate"
    done
done
rm -f "/tmp/mnist-bench-$$.json"
printf '%-28s %s\n' "without" "${rates[plain]}" "--dashboard 0" "${rates[dashboard]}" "--trace FILE" "${rates[trace]}"
