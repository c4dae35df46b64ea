#!/usr/bin/env bash
# libFuzzer with AddressSanitizer on the code that reads the wire and files, two targets built into
# .build/fuzz/: the message decoder (Fuzz/MessageDecoder.swift with the DataParallel sources) and the
# image and IDX readers (Fuzz/ImageReaders.swift with the MNIST reader sources: PNG through libpng,
# PGM/PPM, the image dispatch and preprocessing with its photo steps and the number segmentation, IDX
# with its gzip layer through zlib, and the reader of curl's report of a download's headers). SECONDS (default 60) is the whole fuzzing time, split evenly
# between the targets. Each starts from a corpus
# seeded with valid inputs that grows across runs (.build/fuzz/corpus, .build/fuzz/corpus-readers).
# Usage: Fuzz/run.sh [SECONDS]. Exits non-zero on a crash, leaving the input in .build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
out=.build/fuzz
mkdir -p "$out/corpus" "$out/corpus-readers"
quiet() { grep -v "Cannot export local symbol" >&2 || true; }
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name DataParallelFuzz \
    Sources/DataParallel/*.swift Fuzz/MessageDecoder.swift -o "$out/message-decoder" 2> >(quiet)
# Only the reader files and what they use (not Fetch, whose checksums need swift-crypto); checks stay
# on (-O), as the package compiles them. The test helper that writes PNGs by hand makes seeds.
readers=()
for name in Gzip IDX LabeledImages Image ImageFile PNG JPEG EXIF PNM Preprocess PreprocessPhoto PreprocessResampling \
    NumberSegmentation ImageTextPicture Download; do
    readers+=("Sources/MNIST/$name.swift")
done
# shellcheck disable=SC2046  # pkg-config prints several flags
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name MNISTFuzz -I Sources/CPNG -I Sources/CZlib \
    -I Sources/CTurboJPEG \
    "${readers[@]}" Tests/MNISTTests/PNGHandmade.swift Fuzz/ImageReaders.swift \
    $(pkg-config --libs libpng zlib libturbojpeg) -o "$out/image-readers" 2> >(quiet)
export SWIFT_BACKTRACE=enable=no  # libFuzzer and ASan report crashes themselves.

status=0
# fuzz TARGET CORPUS SECONDS MAX_LEN DESCRIPTION
fuzz() {
    local target=$1 corpus=$2 time=$3 max_len=$4 what=$5
    local log="$out/last-run-$target.log"
    MNIST_FUZZ_SEEDS="$corpus" "$out/$target" -runs=0 "$corpus" >/dev/null 2>&1
    if ! "$out/$target" -max_total_time="$time" -max_len="$max_len" -artifact_prefix="$out/$target-" \
        -print_final_stats=1 "$corpus" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $what crashed; the input is in $out/ ($target-*)" >&2
        status=1
        return
    fi
    local runs
    runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
    echo "fuzz: $runs inputs through $what in ${time} s (libFuzzer, AddressSanitizer), no crash"
}
first=$((seconds / 2 > 0 ? seconds / 2 : 1))  # libFuzzer reads 0 s as no limit
fuzz message-decoder "$out/corpus" "$first" 4096 "the message decoder"
fuzz image-readers "$out/corpus-readers" $((seconds - first > 0 ? seconds - first : 1)) 8192 \
    "the image, IDX and download-report readers"
exit $status
