// The codec: every kind round-trips, the header bytes match PROTOCOL.md, and malformed input is
// rejected with a specific error and never traps (random frames, truncations, bit flips).
import XCTest
import TestSupport
@testable import DataParallel

final class MessageCodecTests: XCTestCase {
    /// One example of every kind, with non-trivial values. Add the new kind here when adding one.
    static let examples: [Message] = [
        .hello(
            protocolVersion: ProtocolInfo.version, workerName: "node-7 ✓", threads: 8, session: 0xDEAD_BEEF_0000_0001),
        .welcome(workerIndex: 2, workerCount: 3),
        .refuse(protocolVersion: ProtocolInfo.version, reason: "cluster is full"),
        .shard(
            Shard(
                pixelsPerImage: 3, images: [0, 1, 2, 250, 251, 255], labels: [7, 9],
                settings: Array("{\"lr\":0.1}".utf8), firstKey: 7_500)),
        .ready(firstKey: 40_000, sampleCount: 20_000),
        .step(
            StepAssignment(
                step: 1234, epoch: 5, weights: [1.5, -0.25, .greatestFiniteMagnitude, 0],
                sampleKeys: [0, 19_999, 7],
                microBatches: [MicroBatch(block: 2, sampleCount: 2), MicroBatch(block: 3, sampleCount: 1)])),
        .gradient(
            GradientReport(
                step: 1234,
                pieces: [
                    GradientPiece(
                        blocks: 2..<4, sampleCount: 3, correctCount: 2, lossSum: 6.931471805599453,
                        gradient: [-1, 2.5, 1e-30, -0.0]),
                    GradientPiece(blocks: 4..<5, sampleCount: 0, correctCount: 0, lossSum: 0, gradient: [0, 0, 0, 1]),
                ], timing: WorkerTiming(received: 1_000_000_007, sent: 1_000_250_000))),
        .heartbeat,
        .shutdown(reason: "training finished after 100 steps"),
        .goodbye(reason: "interrupted"),
    ]

    func testEveryKindHasAnExample() {
        XCTAssertEqual(Set(Self.examples.map(\.kind)), Set(MessageKind.allCases))
    }

    func testEveryKindRoundTrips() throws {
        for message in Self.examples {
            let frames = message.encode()
            XCTAssertEqual(frames.count, 1 + message.kind.payloadFrameCount, "\(message.kind)")
            XCTAssertEqual(frames[0].count, ProtocolInfo.headerByteCount)
            XCTAssertEqual(try Message.decode(frames), message, "\(message.kind)")
        }
    }

    /// Frames that are not byte arrays (as a socket library hands them over) decode to the same
    /// messages, and the payloads a socket layer writes are exactly `encode()`'s bytes.
    func testPayloadsMatchEncodeAndForeignFramesDecode() throws {
        struct ForeignFrame: WireFrame {
            let storage: [UInt8]  // The frame's bytes start 3 bytes into the storage.
            init(_ bytes: [UInt8]) { storage = [0xEE, 0xEE, 0xEE] + bytes }
            var byteCount: Int { storage.count - 3 }
            func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
                try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[3...])) }
            }
        }
        for message in Self.examples {
            let frames = message.encode()
            let payloads = message.encodedPayloads()
            XCTAssertEqual(payloads.map(\.byteCount), frames.map(\.count), "\(message.kind)")
            for (payload, bytes) in zip(payloads, frames) {
                var written = [UInt8](repeating: 0xAB, count: payload.byteCount)
                written.withUnsafeMutableBytes { payload.write(to: $0) }
                XCTAssertEqual(written, bytes, "\(message.kind)")
            }
            XCTAssertEqual(try Message.decode(frames.map(ForeignFrame.init)), message, "\(message.kind)")
        }
        // Floats travel as their IEEE bit patterns, least significant byte first (built by hand here).
        let values: [Float] = [1.5, -0.25, .nan]
        let expected = values.flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * $0)) }
        }
        XCTAssertEqual(WirePayload.floats(values).bytes, expected)
    }

    func testEmptyPayloadsRoundTrip() throws {
        let messages: [Message] = [
            .hello(protocolVersion: 1, workerName: "", threads: 0, session: 0),
            .step(StepAssignment(step: 0, epoch: 0, weights: [], sampleKeys: [], microBatches: [])),
            .gradient(GradientReport(step: 0, pieces: [])),
            .shard(Shard(pixelsPerImage: 784, images: [], labels: [], settings: [])),
        ]
        for message in messages { XCTAssertEqual(try Message.decode(message.encode()), message) }
    }

    /// The exact bytes of a gradient header, as documented in PROTOCOL.md.
    func testHeaderLayoutIsLittleEndianAsDocumented() {
        let frames = Message.gradient(
            GradientReport(
                step: 0x0102,
                pieces: [
                    GradientPiece(blocks: 4..<6, sampleCount: 3, correctCount: 2, lossSum: 1.0, gradient: [1, -2])
                ], timing: WorkerTiming(received: 0x10, sent: 0x20))
        ).encode()
        let expected: [UInt8] = [
            0x4D, 0x4E, 0x44, 0x50,  // magic "MNDP"
            0x05, 0x00,  // version 5
            0x07, 0x00,  // kind 7 = gradient
            0x02, 0x01, 0, 0, 0, 0, 0, 0,  // step
            0x01, 0, 0, 0, 0, 0, 0, 0,  // a = piece count
            0x10, 0, 0, 0, 0, 0, 0, 0,  // b = received, on the worker's clock (ns)
            0x02, 0, 0, 0, 0, 0, 0, 0,  // c = values per piece
            0x20, 0, 0, 0, 0, 0, 0, 0,  // d = sent, on the worker's clock (ns)
        ]
        XCTAssertEqual(frames[0], expected)
        XCTAssertEqual(
            frames[1],
            [
                4, 0, 0, 0, 6, 0, 0, 0,  // blocks 4..<6
                3, 0, 0, 0, 2, 0, 0, 0,  // 3 samples, 2 correct
                0, 0, 0, 0, 0, 0, 0xF0, 0x3F,  // loss sum as Float64 1.0
            ])
        XCTAssertEqual(frames[2], [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])  // 1.0, -2.0 as Float32 LE
    }

    func testNaNAndInfinityTravelBitExact() throws {
        let payload: [Float] = [.nan, .infinity, -.infinity, .leastNonzeroMagnitude]
        let decoded = try Message.decode(
            Message.step(StepAssignment(step: 1, epoch: 0, weights: payload, sampleKeys: [], microBatches: []))
                .encode())
        guard case .step(let assignment) = decoded else { return XCTFail("not a step") }
        XCTAssertEqual(assignment.weights.map(\.bitPattern), payload.map(\.bitPattern))
    }

    // MARK: Specific errors

    func testSpecificErrors() {
        let step = Message.step(
            StepAssignment(
                step: 1, epoch: 0, weights: [1, 2], sampleKeys: [3],
                microBatches: [MicroBatch(block: 0, sampleCount: 1)])
        ).encode()
        expect([], .noFrames)
        expect([[1, 2, 3]], .headerSize(byteCount: 3))
        var badMagic = step
        badMagic[0][0] = 0x58
        expect(badMagic, .badMagic([0x58, 0x4E, 0x44, 0x50]))
        var unknown = step
        unknown[0][6] = 99
        expect(unknown, .unknownKind(99))
        var newer = step
        newer[0][4] = UInt8(ProtocolInfo.version + 1)
        expect(
            newer, .unsupportedVersion(kind: .step, version: ProtocolInfo.version + 1, supported: ProtocolInfo.version))
        expect(Array(step.prefix(2)), .frameCount(kind: .step, expected: 4, actual: 2))
        var shortWeights = step
        shortWeights[1].removeLast()
        expect(shortWeights, .payloadSize(kind: .step, frame: 1, field: "weights", expectedBytes: 8, actualBytes: 7))
        var moreMicroBatches = step
        moreMicroBatches[0][40] = 2
        expect(
            moreMicroBatches,
            .payloadSize(kind: .step, frame: 3, field: "microBatches", expectedBytes: 16, actualBytes: 8))
        var miscounted = step
        miscounted[3][4] = 2  // The micro-batch claims 2 samples; the step lists 1 index.
        expect(
            miscounted,
            .valueOutOfRange(
                kind: .step, field: "microBatches (not increasing, or counts differ from the keys)", value: 1))
        var halfTimed = Message.gradient(GradientReport(step: 0, pieces: [])).encode()
        halfTimed[0][24] = 1  // received without sent
        expect(halfTimed, .valueOutOfRange(kind: .gradient, field: "sent (d) before received (b)", value: 0))
        var backwards = Message.gradient(
            GradientReport(step: 0, pieces: [], timing: WorkerTiming(received: 9, sent: 9))
        ).encode()
        backwards[0][24] = 10  // received after sent
        expect(backwards, .valueOutOfRange(kind: .gradient, field: "sent (d) before received (b)", value: 9))
        var emptyButSized = Message.gradient(GradientReport(step: 0, pieces: [])).encode()
        emptyButSized[0][32] = 3
        expect(emptyButSized, .valueOutOfRange(kind: .gradient, field: "values per piece (c)", value: 3))
        var hugeCount = step
        for offset in 24..<32 { hugeCount[0][offset] = 0xFF }
        expect(hugeCount, .valueOutOfRange(kind: .step, field: "weight count (b)", value: .max))
        var badText = Message.goodbye(reason: "ab").encode()
        badText[1] = [0xC3, 0x28]
        expect(badText, .invalidText(kind: .goodbye, field: "reason"))
        var badWelcome = Message.welcome(workerIndex: 1, workerCount: 2).encode()
        badWelcome[0][16] = 3  // Index 2 of 2 is a spare; 3 is beyond.
        expect(badWelcome, .valueOutOfRange(kind: .welcome, field: "workerIndex (a)", value: 3))
    }

    /// hello and refuse decode at any version, so that a mismatch can be answered and reported.
    func testHelloAndRefuseDecodeAtAnyVersion() throws {
        let hello = Message.hello(protocolVersion: 999, workerName: "future", threads: 1, session: 3)
        XCTAssertEqual(try Message.decode(hello.encode()), hello)
        let refuse = Message.refuse(protocolVersion: 0, reason: "old")
        XCTAssertEqual(try Message.decode(refuse.encode()), refuse)
    }

    func testErrorDescriptionsAreSpecific() {
        XCTAssertEqual(
            MessageDecodingError.payloadSize(
                kind: .gradient, frame: 1, field: "gradient", expectedBytes: 8,
                actualBytes: 4
            ).description,
            "gradient message: frame 1 (gradient) is 4 bytes, header says 8")
        XCTAssertTrue(
            MessageDecodingError.unsupportedVersion(kind: .step, version: 2, supported: 1).description
                .contains("version 2"))
    }

    private func expect(_ frames: [[UInt8]], _ expected: MessageDecodingError, line: UInt = #line) {
        XCTAssertThrowsError(try Message.decode(frames), line: line) { error in
            XCTAssertEqual(error as? MessageDecodingError, expected, line: line)
        }
    }

    // MARK: Fuzz

    /// Random frames, truncations and bit flips of valid messages: decode either throws a
    /// MessageDecodingError or returns a message that re-encodes to the same frames. It never traps.
    func testFuzzNeverTrapsAndOnlyThrowsDecodingErrors() {
        var random = ClusterRandom(seed: 0xF022)
        var decodedCount = 0
        for round in 0..<20_000 {
            var frames: [[UInt8]]
            switch round % 4 {
            case 0:  // Pure noise, sometimes with a valid magic.
                frames = (0..<Int.random(in: 0...4, using: &random)).map { _ in
                    (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
                if !frames.isEmpty, frames[0].count >= 4, random.chance(0.5) {
                    frames[0].replaceSubrange(0..<4, with: ProtocolInfo.magic)
                }
            case 1:  // A valid header of a random kind with random counts and random payload lengths.
                var header = Header(
                    version: ProtocolInfo.version,
                    kind: MessageKind.allCases.randomElement(using: &random) ?? .heartbeat)
                header.step = random.chance(0.5) ? UInt64.random(in: 0...3, using: &random) : random.next()
                header.a = UInt64.random(in: 0...4, using: &random)
                header.b = random.chance(0.9) ? UInt64.random(in: 0...4, using: &random) : random.next()
                header.c = random.chance(0.9) ? UInt64.random(in: 0...4, using: &random) : random.next()
                header.d = random.chance(0.5) ? 0 : random.next()
                frames =
                    [header.bytes]
                    + (0..<Int.random(in: 0...4, using: &random)).map { _ in
                        (0..<Int.random(in: 0...24, using: &random)).map { _ in
                            UInt8.random(in: 0...255, using: &random)
                        }
                    }
            case 2:  // A valid message truncated somewhere.
                frames = (Self.examples.randomElement(using: &random) ?? .heartbeat).encode()
                let frame = Int.random(in: 0..<frames.count, using: &random)
                frames[frame] = Array(frames[frame].prefix(Int.random(in: 0...frames[frame].count, using: &random)))
                if random.chance(0.3) { frames.removeLast() }
            default:  // A valid message with one bit flipped.
                frames = (Self.examples.randomElement(using: &random) ?? .heartbeat).encode()
                let frame = Int.random(in: 0..<frames.count, using: &random)
                if !frames[frame].isEmpty {
                    let byte = Int.random(in: 0..<frames[frame].count, using: &random)
                    frames[frame][byte] ^= 1 << UInt8.random(in: 0...7, using: &random)
                }
            }
            do {
                let message = try Message.decode(frames)
                decodedCount += 1
                XCTAssertEqual(message.encode(), frames, "round \(round): decoded frames must re-encode identically")
            } catch is MessageDecodingError {
            } catch {
                XCTFail("round \(round): unexpected error \(error)")
            }
        }
        XCTAssertGreaterThan(decodedCount, 0, "some bit flips land in payloads and still decode")
    }
}
