// The one codec of the wire protocol: Message <-> multipart frames. It encodes to `WirePayload`s (which a
// socket layer copies once into its own buffers; `encode()` gives plain byte arrays) and decodes any
// `WireFrame` (a byte array, or a frame left where the socket library received it).
// Layout (all little-endian, see PROTOCOL.md for the per-kind table):
//   frame 0, 48 bytes: magic "MNDP" | version u16 | kind u16 | step u64 | a u64 | b u64 | c u64 | d u64
//   frames 1...: raw payloads (UInt8 bytes, Float32 or UInt32 arrays), no per-tensor framing.
// Decoding never traps: every length is checked against the header before any copy, and every
// failure is a specific `MessageDecodingError`. This file knows nothing about sockets.

/// Why a list of frames is not a valid message.
public enum MessageDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message had no frames at all.
    case noFrames
    /// The first frame is not exactly `ProtocolInfo.headerByteCount` bytes long.
    case headerSize(byteCount: Int)
    /// The first four bytes are not "MNDP": the peer does not speak this protocol at all.
    case badMagic([UInt8])
    /// The kind number is not one this build knows.
    case unknownKind(UInt16)
    /// A kind other than hello/refuse arrived with a protocol version this build does not speak.
    case unsupportedVersion(kind: MessageKind, version: UInt16, supported: UInt16)
    /// The message has the wrong number of frames for its kind (header included).
    case frameCount(kind: MessageKind, expected: Int, actual: Int)
    /// A payload frame's length disagrees with the counts in the header.
    case payloadSize(kind: MessageKind, frame: Int, field: String, expectedBytes: Int, actualBytes: Int)
    /// A header field that this kind does not use is not zero.
    case nonZeroUnusedField(kind: MessageKind, field: String)
    /// A header field is outside the range this kind allows.
    case valueOutOfRange(kind: MessageKind, field: String, value: UInt64)
    /// A text field is not valid UTF-8.
    case invalidText(kind: MessageKind, field: String)

    public var description: String {
        switch self {
        case .noFrames:
            return "message has no frames"
        case .headerSize(let byteCount):
            return "header frame is \(byteCount) bytes, expected \(ProtocolInfo.headerByteCount)"
        case .badMagic(let bytes):
            return "header does not start with \"MNDP\" (got \(bytes)); the peer does not speak this protocol"
        case .unknownKind(let raw):
            return "unknown message kind \(raw)"
        case .unsupportedVersion(let kind, let version, let supported):
            return "\(kind) message uses protocol version \(version), this build speaks \(supported)"
        case .frameCount(let kind, let expected, let actual):
            return "\(kind) message has \(actual) frames, expected \(expected)"
        case .payloadSize(let kind, let frame, let field, let expected, let actual):
            return "\(kind) message: frame \(frame) (\(field)) is \(actual) bytes, header says \(expected)"
        case .nonZeroUnusedField(let kind, let field):
            return "\(kind) message: unused header field \(field) is not zero"
        case .valueOutOfRange(let kind, let field, let value):
            return "\(kind) message: header field \(field) = \(value) is out of range"
        case .invalidText(let kind, let field):
            return "\(kind) message: \(field) is not valid UTF-8"
        }
    }
}

extension Message {
    /// Bytes per piece record of a gradient message: first block u32, end block u32, sample count u32,
    /// correct count u32, loss sum f64.
    public static let pieceRecordByteCount = 24

    /// The largest frame a worker may legally send in a run with `parameterCount` weights and
    /// `blockCount` blocks: a gradient of one piece per block, a name or reason of the longest text.
    /// A socket's inbound size limit (`ZMQ_MAXMSGSIZE`) set from it drops a larger frame before it is
    /// read into memory.
    public static func largestWorkerFrame(parameterCount: Int, blockCount: Int) -> Int {
        let blocks = max(1, blockCount)
        return max(
            ProtocolInfo.maximumTextByteCount, pieceRecordByteCount * blocks, 4 * max(0, parameterCount) * blocks)
    }

    /// Encodes the message as multipart frames: one 48-byte header frame, then the payload frames.
    ///
    /// Negative counts (which the public types do not prevent) are written as 0.
    public func encode() -> [[UInt8]] { encodedPayloads().map(\.bytes) }

    /// The frames of `encode()`, with number arrays left as they are until a socket layer writes them
    /// into its own buffers (`WirePayload.write(to:)`): one copy of the weights or gradient, not two.
    public func encodedPayloads() -> [WirePayload] {
        var header = Header(version: ProtocolInfo.version, kind: kind)
        switch self {
        case .hello(let protocolVersion, let workerName, let threads, let session):
            let name = Array(workerName.utf8)
            header.version = protocolVersion
            header.a = UInt64(clamping: threads)
            header.b = UInt64(name.count)
            header.c = session
            return [.bytes(header.bytes), .bytes(name)]
        case .welcome(let workerIndex, let workerCount):
            header.a = UInt64(clamping: workerIndex)
            header.b = UInt64(clamping: workerCount)
            return [.bytes(header.bytes)]
        case .refuse(let protocolVersion, let reason):
            let text = Array(reason.utf8)
            header.version = protocolVersion
            header.b = UInt64(text.count)
            return [.bytes(header.bytes), .bytes(text)]
        case .shard(let shard):
            header.a = UInt64(shard.sampleCount)
            header.b = UInt64(clamping: shard.pixelsPerImage)
            header.c = UInt64(shard.settings.count)
            header.d = UInt64(clamping: shard.firstKey)
            return [.bytes(header.bytes), .bytes(shard.images), .bytes(shard.labels), .bytes(shard.settings)]
        case .ready(let firstKey, let sampleCount):
            header.a = UInt64(clamping: sampleCount)
            header.d = UInt64(clamping: firstKey)
            return [.bytes(header.bytes)]
        case .step(let assignment):
            header.step = UInt64(clamping: assignment.step)
            header.a = UInt64(clamping: assignment.epoch)
            header.b = UInt64(assignment.weights.count)
            header.c = UInt64(assignment.sampleKeys.count)
            header.d = UInt64(assignment.microBatches.count)
            let microBatches = assignment.microBatches.flatMap {
                [UInt32(clamping: $0.block), UInt32(clamping: $0.sampleCount)]
            }
            return [
                .bytes(header.bytes), .floats(assignment.weights), .uint32s(assignment.sampleKeys),
                .uint32s(microBatches),
            ]
        case .gradient(let report):
            header.step = UInt64(clamping: report.step)
            header.a = UInt64(report.pieces.count)
            let valueCount = report.pieces.first?.gradient.count ?? 0
            header.c = UInt64(valueCount)
            header.b = report.timing?.received ?? 0
            header.d = report.timing?.sent ?? 0
            var records: [UInt8] = []
            records.reserveCapacity(report.pieces.count * Message.pieceRecordByteCount)
            for piece in report.pieces {
                WireBytes.append(UInt64(clamping: piece.blocks.lowerBound), width: 4, to: &records)
                WireBytes.append(UInt64(clamping: piece.blocks.upperBound), width: 4, to: &records)
                WireBytes.append(UInt64(clamping: piece.sampleCount), width: 4, to: &records)
                WireBytes.append(UInt64(clamping: piece.correctCount), width: 4, to: &records)
                WireBytes.append(piece.lossSum.bitPattern, width: 8, to: &records)
            }
            // One piece (the usual case) goes out without a copy; several are laid end to end.
            let values =
                report.pieces.count == 1
                ? report.pieces[0].gradient
                : report.pieces.flatMap { $0.gradient.count == valueCount ? $0.gradient : [] }
            return [.bytes(header.bytes), .bytes(records), .floats(values)]
        case .heartbeat:
            return [.bytes(header.bytes)]
        case .shutdown(let reason), .goodbye(let reason):
            let text = Array(reason.utf8)
            header.b = UInt64(text.count)
            return [.bytes(header.bytes), .bytes(text)]
        }
    }

    /// Decodes multipart frames into a message, or throws a `MessageDecodingError` saying what is wrong.
    ///
    /// `hello` and `refuse` are accepted at any protocol version (their layout never changes) so that
    /// a version mismatch can be answered and reported; every other kind must carry `supportedVersion`.
    public static func decode<Frame: WireFrame>(
        _ frames: [Frame],
        supportedVersion: UInt16 = ProtocolInfo.version
    ) throws -> Message {
        guard let first = frames.first else { throw MessageDecodingError.noFrames }
        let header = try Header(decoding: first.withUnsafeBytes { Array($0) })
        guard let kind = MessageKind(rawValue: header.kindRaw) else {
            throw MessageDecodingError.unknownKind(header.kindRaw)
        }
        if kind != .hello && kind != .refuse && header.version != supportedVersion {
            throw MessageDecodingError.unsupportedVersion(
                kind: kind, version: header.version,
                supported: supportedVersion)
        }
        guard frames.count == 1 + kind.payloadFrameCount else {
            throw MessageDecodingError.frameCount(
                kind: kind, expected: 1 + kind.payloadFrameCount,
                actual: frames.count)
        }
        let reader = FieldReader(kind: kind, header: header, frames: frames)
        switch kind {
        case .hello:
            try reader.requireZero(step: true, d: true)
            let threads = try reader.int(header.a, "threads (a)")
            let name = try reader.text(frame: 1, byteCount: header.b, field: "workerName")
            return .hello(protocolVersion: header.version, workerName: name, threads: threads, session: header.c)
        case .welcome:
            try reader.requireZero(step: true, c: true, d: true)
            let count = try reader.int(header.b, "workerCount (b)")
            guard header.a <= header.b else {  // workerIndex == workerCount: admitted as a spare.
                throw MessageDecodingError.valueOutOfRange(kind: kind, field: "workerIndex (a)", value: header.a)
            }
            return .welcome(workerIndex: Int(header.a), workerCount: count)
        case .refuse:
            try reader.requireZero(step: true, a: true, c: true, d: true)
            let reason = try reader.text(frame: 1, byteCount: header.b, field: "reason")
            return .refuse(protocolVersion: header.version, reason: reason)
        case .shard:
            try reader.requireZero(step: true)
            let samples = try reader.int(header.a, "sampleCount (a)")
            let pixels = try reader.int(header.b, "pixelsPerImage (b)")
            let firstKey = try reader.int(header.d, "firstKey (d)")
            let imageBytes = try reader.byteCount(samples, times: pixels, field: "images")
            try reader.requireSize(frame: 1, bytes: imageBytes, field: "images")
            try reader.requireSize(frame: 2, bytes: samples, field: "labels")
            try reader.requireSize(
                frame: 3, bytes: try reader.int(header.c, "settings byte count (c)"),
                field: "settings")
            return .shard(
                Shard(
                    pixelsPerImage: pixels, images: reader.bytes(frame: 1), labels: reader.bytes(frame: 2),
                    settings: reader.bytes(frame: 3), firstKey: firstKey))
        case .ready:
            try reader.requireZero(step: true, b: true, c: true)
            return .ready(
                firstKey: try reader.int(header.d, "firstKey (d)"),
                sampleCount: try reader.int(header.a, "sampleCount (a)"))
        case .step:
            let step = try reader.int(header.step, "step")
            let epoch = try reader.int(header.a, "epoch (a)")
            let weightCount = try reader.int(header.b, "weight count (b)")
            let indexCount = try reader.int(header.c, "index count (c)")
            let microBatchCount = try reader.int(header.d, "micro-batch count (d)")
            try reader.requireSize(
                frame: 1, bytes: try reader.byteCount(weightCount, times: 4, field: "weights"),
                field: "weights")
            try reader.requireSize(
                frame: 2, bytes: try reader.byteCount(indexCount, times: 4, field: "sampleKeys"),
                field: "sampleKeys")
            try reader.requireSize(
                frame: 3, bytes: try reader.byteCount(microBatchCount, times: 8, field: "microBatches"),
                field: "microBatches")
            let pairs = WireBytes.values(from: frames[3], as: UInt32.self)
            let microBatches = (0..<microBatchCount).map {
                MicroBatch(block: Int(pairs[2 * $0]), sampleCount: Int(pairs[2 * $0 + 1]))
            }
            let assignment = StepAssignment(
                step: step, epoch: epoch, weights: WireBytes.values(from: frames[1], as: Float.self),
                sampleKeys: WireBytes.values(from: frames[2], as: UInt32.self), microBatches: microBatches)
            guard assignment.isWellFormed else {
                throw MessageDecodingError.valueOutOfRange(
                    kind: kind, field: "microBatches (not increasing, or counts differ from the keys)",
                    value: UInt64(microBatchCount))
            }
            return .step(assignment)
        case .gradient:
            // b and d: the worker's receive and send times (both 0: not measured; else 1 <= b <= d).
            guard (header.b == 0) == (header.d == 0), header.b <= header.d else {
                throw MessageDecodingError.valueOutOfRange(
                    kind: kind, field: "sent (d) before received (b)", value: header.d)
            }
            let timing = header.b == 0 ? nil : WorkerTiming(received: header.b, sent: header.d)
            let step = try reader.int(header.step, "step")
            let pieceCount = try reader.int(header.a, "piece count (a)")
            let valueCount = try reader.int(header.c, "values per piece (c)")
            guard pieceCount > 0 || valueCount == 0 else {
                throw MessageDecodingError.valueOutOfRange(kind: kind, field: "values per piece (c)", value: header.c)
            }
            try reader.requireSize(
                frame: 1, bytes: try reader.byteCount(pieceCount, times: Message.pieceRecordByteCount, field: "pieces"),
                field: "pieces")
            let totalValues = try reader.byteCount(pieceCount, times: valueCount, field: "gradient")
            try reader.requireSize(
                frame: 2, bytes: try reader.byteCount(totalValues, times: 4, field: "gradient"), field: "gradient")
            let records = reader.bytes(frame: 1)
            let values = WireBytes.values(from: frames[2], as: Float.self)
            var pieces: [GradientPiece] = []
            pieces.reserveCapacity(pieceCount)
            for index in 0..<pieceCount {
                let at = index * Message.pieceRecordByteCount
                let lower = Int(WireBytes.littleEndian(records, at: at, width: 4))
                let upper = Int(WireBytes.littleEndian(records, at: at + 4, width: 4))
                let samples = Int(WireBytes.littleEndian(records, at: at + 8, width: 4))
                let correct = Int(WireBytes.littleEndian(records, at: at + 12, width: 4))
                guard lower < upper, correct <= samples else {
                    throw MessageDecodingError.valueOutOfRange(
                        kind: kind,
                        field: "piece \(index) (blocks \(lower)..<\(upper), \(correct) of \(samples) correct)",
                        value: UInt64(index))
                }
                let gradient =
                    pieceCount == 1 ? values : Array(values[(index * valueCount)..<((index + 1) * valueCount)])
                pieces.append(
                    GradientPiece(
                        blocks: lower..<upper, sampleCount: samples, correctCount: correct,
                        lossSum: Double(bitPattern: WireBytes.littleEndian(records, at: at + 16, width: 8)),
                        gradient: gradient))
            }
            return .gradient(GradientReport(step: step, pieces: pieces, timing: timing))
        case .heartbeat:
            try reader.requireZero(step: true, a: true, b: true, c: true, d: true)
            return .heartbeat
        case .shutdown, .goodbye:
            try reader.requireZero(step: true, a: true, c: true, d: true)
            let reason = try reader.text(frame: 1, byteCount: header.b, field: "reason")
            return kind == .shutdown ? .shutdown(reason: reason) : .goodbye(reason: reason)
        }
    }
}

/// The fixed 48-byte header frame.
struct Header: Equatable {
    var version: UInt16
    var kindRaw: UInt16
    var step: UInt64 = 0
    var a: UInt64 = 0
    var b: UInt64 = 0
    var c: UInt64 = 0
    var d: UInt64 = 0

    init(version: UInt16, kind: MessageKind) {
        self.version = version
        self.kindRaw = kind.rawValue
    }

    init(decoding frame: [UInt8]) throws {
        guard frame.count == ProtocolInfo.headerByteCount else {
            throw MessageDecodingError.headerSize(byteCount: frame.count)
        }
        guard Array(frame[0..<4]) == ProtocolInfo.magic else {
            throw MessageDecodingError.badMagic(Array(frame[0..<4]))
        }
        version = UInt16(WireBytes.littleEndian(frame, at: 4, width: 2))
        kindRaw = UInt16(WireBytes.littleEndian(frame, at: 6, width: 2))
        step = WireBytes.littleEndian(frame, at: 8, width: 8)
        a = WireBytes.littleEndian(frame, at: 16, width: 8)
        b = WireBytes.littleEndian(frame, at: 24, width: 8)
        c = WireBytes.littleEndian(frame, at: 32, width: 8)
        d = WireBytes.littleEndian(frame, at: 40, width: 8)
    }

    var bytes: [UInt8] {
        var out = ProtocolInfo.magic
        out.reserveCapacity(ProtocolInfo.headerByteCount)
        WireBytes.append(UInt64(version), width: 2, to: &out)
        WireBytes.append(UInt64(kindRaw), width: 2, to: &out)
        for field in [step, a, b, c, d] { WireBytes.append(field, width: 8, to: &out) }
        return out
    }
}

/// Checks the header fields and payload frames of one message being decoded.
private struct FieldReader<Frame: WireFrame> {
    let kind: MessageKind
    let header: Header
    let frames: [Frame]

    init(kind: MessageKind, header: Header, frames: [Frame]) {
        self.kind = kind
        self.header = header
        self.frames = frames
    }

    func requireZero(step: Bool = false, a: Bool = false, b: Bool = false, c: Bool = false, d: Bool = false) throws {
        let checks: [(Bool, UInt64, String)] = [
            (step, header.step, "step"), (a, header.a, "a"),
            (b, header.b, "b"), (c, header.c, "c"), (d, header.d, "d"),
        ]
        for (wanted, value, name) in checks where wanted && value != 0 {
            throw MessageDecodingError.nonZeroUnusedField(kind: kind, field: name)
        }
    }

    /// A header count as an Int; values beyond 2^48 are rejected, which no real message reaches.
    func int(_ value: UInt64, _ field: String) throws -> Int {
        guard value <= 1 << 48 else {
            throw MessageDecodingError.valueOutOfRange(kind: kind, field: field, value: value)
        }
        return Int(value)
    }

    func byteCount(_ count: Int, times size: Int, field: String) throws -> Int {
        let (product, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow else {
            throw MessageDecodingError.valueOutOfRange(kind: kind, field: field, value: UInt64(count))
        }
        return product
    }

    func requireSize(frame: Int, bytes: Int, field: String) throws {
        guard frames[frame].byteCount == bytes else {
            throw MessageDecodingError.payloadSize(
                kind: kind, frame: frame, field: field,
                expectedBytes: bytes, actualBytes: frames[frame].byteCount)
        }
    }

    func bytes(frame: Int) -> [UInt8] { frames[frame].withUnsafeBytes { Array($0) } }

    func text(frame: Int, byteCount: UInt64, field: String) throws -> String {
        guard byteCount <= UInt64(ProtocolInfo.maximumTextByteCount) else {
            throw MessageDecodingError.valueOutOfRange(kind: kind, field: "\(field) byte count (b)", value: byteCount)
        }
        try requireSize(frame: frame, bytes: Int(byteCount), field: field)
        guard let text = frames[frame].withUnsafeBytes({ String(validating: $0, as: UTF8.self) }) else {
            throw MessageDecodingError.invalidText(kind: kind, field: field)
        }
        return text
    }
}

/// Little-endian conversions between numbers and bytes.
enum WireBytes {
    static func littleEndian(_ bytes: [UInt8], at offset: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<width { value |= UInt64(bytes[offset + index]) << (8 * UInt64(index)) }
        return value
    }

    static func append(_ value: UInt64, width: Int, to bytes: inout [UInt8]) {
        for index in 0..<width { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
    }

    /// Writes 4-byte values (Float32 or UInt32) little-endian into `target` (exactly their size);
    /// one copy on little-endian hosts.
    static func write<Value: FixedWidthScalar>(_ values: [Value], to target: UnsafeMutableRawBufferPointer) {
        precondition(target.count == values.count * 4, "payload buffer size")
        #if _endian(little)
            values.withUnsafeBytes { target.copyMemory(from: $0) }
        #else
            for (index, value) in values.enumerated() {
                target.storeBytes(of: value.wireBits.littleEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        #endif
    }

    /// 4-byte values from a frame of little-endian bytes; its length must be a multiple of 4.
    static func values<Value: FixedWidthScalar, Frame: WireFrame>(from frame: Frame, as: Value.Type) -> [Value] {
        frame.withUnsafeBytes { source in
            let count = source.count / 4
            return [Value](unsafeUninitializedCapacity: count) { buffer, initialized in
                #if _endian(little)
                    if count > 0 {
                        UnsafeMutableRawBufferPointer(buffer).copyMemory(
                            from: UnsafeRawBufferPointer(rebasing: source[0..<(count * 4)]))
                    }
                #else
                    for index in 0..<count {
                        buffer[index] = Value(
                            wireBits: UInt32(
                                littleEndian: source.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
                    }
                #endif
                initialized = count
            }
        }
    }
}

/// The bytes of one received frame, wherever they live: a byte array, or a socket library's message.
public protocol WireFrame {
    /// The frame's length in bytes.
    var byteCount: Int { get }
    /// Calls `body` with the frame's bytes (valid only during the call).
    func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result
}

extension Array: WireFrame where Element == UInt8 {
    public var byteCount: Int { count }
}

/// One encoded frame: bytes, or an array of 4-byte numbers that `write(to:)` lays out little-endian.
public enum WirePayload: Equatable, Sendable {
    case bytes([UInt8])
    case floats([Float])
    case uint32s([UInt32])

    /// The frame's length in bytes.
    public var byteCount: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .floats(let values): values.count * 4
        case .uint32s(let values): values.count * 4
        }
    }

    /// Writes the frame into `target`, which must be exactly `byteCount` bytes.
    public func write(to target: UnsafeMutableRawBufferPointer) {
        switch self {
        case .bytes(let bytes):
            precondition(target.count == bytes.count, "payload buffer size")
            bytes.withUnsafeBytes { target.copyMemory(from: $0) }
        case .floats(let values): WireBytes.write(values, to: target)
        case .uint32s(let values): WireBytes.write(values, to: target)
        }
    }

    /// The frame as a byte array.
    public var bytes: [UInt8] {
        if case .bytes(let bytes) = self { return bytes }
        return [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            write(to: UnsafeMutableRawBufferPointer(buffer))
            initialized = byteCount
        }
    }
}

/// The 4-byte scalars that travel as payload arrays.
protocol FixedWidthScalar {
    var wireBits: UInt32 { get }
    init(wireBits: UInt32)
}

extension Float: FixedWidthScalar {
    var wireBits: UInt32 { bitPattern }
    init(wireBits: UInt32) { self.init(bitPattern: wireBits) }
}

extension UInt32: FixedWidthScalar {
    var wireBits: UInt32 { self }
    init(wireBits: UInt32) { self = wireBits }
}
