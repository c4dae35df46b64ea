// libFuzzer target for the message decoder (`Message.decode`), compiled together with the
// DataParallel sources by Fuzz/run.sh, with AddressSanitizer. An input is split into frames: byte 0
// gives the count (1-6), then one little-endian UInt16 length per frame but the last, which takes
// the rest. Whatever decodes must encode and decode again to the same bytes (a crash otherwise).
import Foundation

/// The input's frames (see the file's comment).
func frames(of input: UnsafeRawBufferPointer) -> [[UInt8]] {
    guard let first = input.first else { return [] }
    let count = Int(first % 6) + 1
    var offset = 1
    var lengths: [Int] = []
    for _ in 0..<(count - 1) {
        guard offset + 2 <= input.count else { break }
        lengths.append(Int(input[offset]) | Int(input[offset + 1]) << 8)
        offset += 2
    }
    var result: [[UInt8]] = []
    for length in lengths {
        let end = min(input.count, offset + length)
        result.append(Array(input[offset..<end]))
        offset = end
    }
    result.append(Array(input[min(offset, input.count)...]))
    return result
}

/// The bytes of an input that splits into `frames`.
func input(of frames: [[UInt8]]) -> [UInt8] {
    var bytes: [UInt8] = [UInt8(frames.count - 1)]
    for frame in frames.dropLast() { bytes += [UInt8(frame.count & 0xff), UInt8(frame.count >> 8)] }
    for frame in frames { bytes += frame }
    return bytes
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessageDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let split = frames(of: UnsafeRawBufferPointer(start: data, count: size))
    guard let message = try? Message.decode(split) else { return 0 }
    // Compared as bytes: a NaN in a gradient is not equal to itself, but its bits are.
    let encoded = message.encode()
    let again = try? Message.decode(encoded)
    precondition(again?.encode() == encoded, "a decoded message does not survive encoding: \(message)")
    return 0
}

/// With MNIST_FUZZ_SEEDS set to a folder, writes one input per message kind there (the corpus to
/// start from: valid messages reach the decoder's deeper checks sooner than random bytes do).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let folder = ProcessInfo.processInfo.environment["MNIST_FUZZ_SEEDS"] else { return 0 }
    let piece = GradientPiece(blocks: 0..<2, sampleCount: 3, correctCount: 1, lossSum: 2.5, gradient: [1, -2, 3])
    let seeds: [Message] = [
        .hello(protocolVersion: ProtocolInfo.version, workerName: "seed", threads: 2, session: 1 << 16 | 3),
        .welcome(workerIndex: 1, workerCount: 3),
        .refuse(protocolVersion: ProtocolInfo.version, reason: "full"),
        .shard(
            Shard(pixelsPerImage: 4, images: [1, 2, 3, 4, 5, 6, 7, 8], labels: [3, 9], settings: [7], firstKey: 5)),
        .ready(firstKey: 5, sampleCount: 2),
        .step(
            StepAssignment(
                step: 4, epoch: 1, weights: [0.5, -1], sampleKeys: [5, 6, 9],
                microBatches: [MicroBatch(block: 0, sampleCount: 2), MicroBatch(block: 1, sampleCount: 1)])),
        .gradient(GradientReport(step: 4, pieces: [piece])),
        .heartbeat,
        .goodbye(reason: "bye"),
        .shutdown(reason: "done"),
    ]
    for (index, message) in seeds.enumerated() {
        let url = URL(fileURLWithPath: folder).appendingPathComponent("seed-\(index)")
        try? Data(input(of: message.encode())).write(to: url)
    }
    return 0
}
