#!/usr/bin/env bash
# libFuzzer on the wire's message decoder, with AddressSanitizer: builds Fuzz/MessageDecoder.swift with
# the DataParallel sources into .build/fuzz/ and runs it for SECONDS (default 60) from a corpus that
# starts with one valid message of each kind and grows across runs (.build/fuzz/corpus).
# Usage: Fuzz/run.sh [SECONDS]. Exits non-zero on a crash, leaving the input in .build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
out=.build/fuzz
mkdir -p "$out/corpus"
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name DataParallelFuzz \
    Sources/DataParallel/*.swift Fuzz/MessageDecoder.swift -o "$out/message-decoder" 2> >(grep -v "Cannot export local symbol" >&2)
export SWIFT_BACKTRACE=enable=no  # libFuzzer and ASan report crashes themselves.
MNIST_FUZZ_SEEDS="$out/corpus" "$out/message-decoder" -runs=0 "$out/corpus" >/dev/null 2>&1
log="$out/last-run.log"
if ! "$out/message-decoder" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$out/" -print_final_stats=1 \
    "$out/corpus" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: the message decoder crashed; the input is in $out/" >&2
    exit 1
fi
runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
echo "fuzz: $runs inputs through the message decoder in ${seconds} s (libFuzzer, AddressSanitizer), no crash"
