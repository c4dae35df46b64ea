// Every message the coordinator and workers exchange, as plain Swift values.
// The byte encoding lives in Message+Codec.swift; the logic that decides when to send what lives in
// Coordinator.swift and Worker.swift. Nothing here touches a socket, a clock or the network model.

/// Facts about the wire protocol that every node must agree on.
public enum ProtocolInfo {
    /// The protocol version this build speaks. Bump it when any frame layout or meaning changes.
    /// `hello` and `refuse` keep their layout across every version so that a mismatch can be reported.
    public static let version: UInt16 = 5
    /// The four bytes every header frame starts with: ASCII "MNDP" (MNIST data parallel).
    public static let magic: [UInt8] = [0x4D, 0x4E, 0x44, 0x50]
    /// The size of the header frame in bytes; every message starts with exactly one such frame.
    public static let headerByteCount = 48
    /// The tick length the default timeouts are tuned for, in milliseconds.
    /// The state machines never read a clock; the caller delivers one `tick` event per interval.
    public static let recommendedTickMilliseconds = 100
    /// The longest `workerName`, `reason` or similar text accepted, in UTF-8 bytes.
    public static let maximumTextByteCount = 4096
    /// The longest worker name shown in logs, in characters (`printableName`); `mnist worker --name`
    /// refuses longer ones.
    public static let maximumNameLength = 64
}

/// The kind number of a message: the 16-bit value at byte offset 6 of the header frame.
///
/// These numbers are fixed forever. To add a kind: pick the next unused number (never reuse one),
/// then update, in this order, `Message` (the case), `Message.kind`, `Message.encode()`,
/// `Message.decode(_:)` (with its frame count in `payloadFrameCount`), the round-trip test in
/// `Tests/DataParallelTests/MessageCodecTests.swift`, and the message table and byte layout in
/// `Sources/DataParallel/PROTOCOL.md`.
public enum MessageKind: UInt16, CaseIterable, Sendable, CustomStringConvertible {
    case hello = 1
    case welcome = 2
    case refuse = 3
    case shard = 4
    case ready = 5
    case step = 6
    case gradient = 7
    case heartbeat = 8
    case shutdown = 9
    case goodbye = 10

    public var description: String {
        switch self {
        case .hello: "hello"
        case .welcome: "welcome"
        case .refuse: "refuse"
        case .shard: "shard"
        case .ready: "ready"
        case .step: "step"
        case .gradient: "gradient"
        case .heartbeat: "heartbeat"
        case .shutdown: "shutdown"
        case .goodbye: "goodbye"
        }
    }

    /// The number of frames after the header frame that a message of this kind carries.
    public var payloadFrameCount: Int {
        switch self {
        case .hello, .refuse, .shutdown, .goodbye: 1
        case .welcome, .ready, .heartbeat: 0
        case .shard: 3
        case .step: 3
        case .gradient: 2
        }
    }
}

/// A run of blocks of the training set, sent by the coordinator after `welcome` and whenever blocks
/// move to the worker; the worker keeps every shard it receives.
public struct Shard: Equatable, Sendable {
    /// Bytes per image (784 for MNIST).
    public var pixelsPerImage: Int
    /// Pixels, one byte each, row-major: `[sampleCount, pixelsPerImage]`.
    public var images: [UInt8]
    /// One class label per image: `[sampleCount]`.
    public var labels: [UInt8]
    /// The coordinator's training settings (model shape, learning rate...), opaque to the protocol.
    public var settings: [UInt8]
    /// The key (`BatchPlan`) of the shard's first sample: shard-local sample i is known as
    /// `firstKey + i` in the whole run, and its dropout and augmentation are keyed by that.
    public var firstKey: Int

    /// The number of samples in the shard.
    public var sampleCount: Int { labels.count }

    /// Creates a shard; `images.count` must equal `labels.count * pixelsPerImage`.
    public init(pixelsPerImage: Int, images: [UInt8], labels: [UInt8], settings: [UInt8], firstKey: Int = 0) {
        precondition(
            pixelsPerImage >= 0 && images.count == labels.count * pixelsPerImage,
            "a shard holds pixelsPerImage bytes per label")
        self.pixelsPerImage = pixelsPerImage
        self.images = images
        self.labels = labels
        self.settings = settings
        self.firstKey = firstKey
    }
}

/// One micro-batch a worker owes in a step: which block of the tree it is, and how many of the
/// step's `sampleKeys` (the next ones, in order) it takes.
public struct MicroBatch: Equatable, Sendable {
    /// The micro-batch's position in the reduction tree (`GradientTree`), 0..<blockCount.
    public var block: Int
    /// Samples in the micro-batch (may be 0 at the end of an epoch: its gradient is then zero).
    public var sampleCount: Int

    public init(block: Int, sampleCount: Int) {
        self.block = block
        self.sampleCount = sampleCount
    }
}

/// The coordinator's request for one step: the weights w_t and some micro-batches of the global batch
/// whose samples the worker holds (normally its share; after a fault also blocks another worker owed).
public struct StepAssignment: Equatable, Sendable {
    /// The step number t, counted from 0 over the whole run; keys dropout.
    public var step: Int
    /// The epoch the step belongs to; keys augmentation.
    public var epoch: Int
    /// The current weights, one flat slab: `[parameterCount]`.
    public var weights: [Float]
    /// The keys (`BatchPlan`) of the micro-batches' samples one after the other, each micro-batch in its
    /// visiting order. Every key lies in a shard the worker holds.
    public var sampleKeys: [UInt32]
    /// The micro-batches, in increasing block order; their `sampleCount`s add up to `sampleKeys.count`.
    public var microBatches: [MicroBatch]

    public init(step: Int, epoch: Int, weights: [Float], sampleKeys: [UInt32], microBatches: [MicroBatch]) {
        self.step = step
        self.epoch = epoch
        self.weights = weights
        self.sampleKeys = sampleKeys
        self.microBatches = microBatches
    }

    /// Each micro-batch with its sample keys.
    public var microBatchIndices: [(microBatch: MicroBatch, indices: ArraySlice<UInt32>)] {
        var start = 0
        return microBatches.map { microBatch in
            let end = min(sampleKeys.count, start + microBatch.sampleCount)
            defer { start = end }
            return (microBatch, sampleKeys[start..<end])
        }
    }

    /// The blocks of the micro-batches, in order: what identifies a request within its step.
    public var blocks: [Int] { microBatches.map(\.block) }

    /// Whether the micro-batches are in strictly increasing block order and account for every key.
    public var isWellFormed: Bool {
        zip(microBatches, microBatches.dropFirst()).allSatisfy { $0.block < $1.block }
            && microBatches.allSatisfy { $0.block >= 0 && $0.sampleCount >= 0 }
            && microBatches.reduce(0, { $0 + $1.sampleCount }) == sampleKeys.count
    }

    /// The micro-batches in runs of consecutive blocks: each run as the range of its positions in
    /// `microBatches` and the blocks it covers. Each run is summed along the tree on its own.
    public var contiguousRuns: [(positions: Range<Int>, blocks: Range<Int>)] {
        var runs: [(positions: Range<Int>, blocks: Range<Int>)] = []
        var start = 0
        for index in microBatches.indices
        where index + 1 == microBatches.count || microBatches[index + 1].block != microBatches[index].block + 1 {
            runs.append((start..<(index + 1), microBatches[start].block..<(microBatches[index].block + 1)))
            start = index + 1
        }
        return runs
    }

    /// Adds the micro-batches' gradients (`leaves`, one per micro-batch, in order) along `tree` into the
    /// maximal nodes that each contiguous run of blocks covers: the pieces a worker sends.
    public func pieces(fromLeaves leaves: [GradientPiece], tree: GradientTree) -> [GradientPiece] {
        precondition(leaves.count == microBatches.count, "one leaf per micro-batch")
        var result: [GradientPiece] = []
        for (positions, blocks) in contiguousRuns {
            for node in tree.nodes(covering: blocks) {
                let inside = leaves[positions].filter { node.contains($0.blocks.lowerBound) }
                if let sum = tree.sum(Array(inside), into: node) { result.append(sum) }
            }
        }
        return result
    }
}

/// A worker's answer to a step: the summed gradients of its micro-batches, added along the tree
/// into the maximal nodes its blocks cover (usually one), with their loss figures.
public struct GradientReport: Equatable, Sendable {
    /// The step this gradient belongs to.
    public var step: Int
    /// Disjoint nodes of the tree, each `[parameterCount]` values, not averaged. A worker sends them in
    /// block order; the coordinator accepts any order.
    public var pieces: [GradientPiece]
    /// When the worker received the step and when it sent this answer, on its own clock (nil: not
    /// measured). Only for timelines: the coordinator aligns the clocks, and nothing in the protocol
    /// depends on it.
    public var timing: WorkerTiming?

    public init(step: Int, pieces: [GradientPiece], timing: WorkerTiming? = nil) {
        self.step = step
        self.pieces = pieces
        self.timing = timing
    }

    /// Samples summed over all pieces.
    public var sampleCount: Int { pieces.reduce(0) { $0 + $1.sampleCount } }
}

/// When a worker received a step and sent its answer: nanoseconds on the worker's own monotonic clock,
/// whose origin is the worker's (only differences and the round trip with the coordinator's clock mean
/// anything). Both are at least 1 and `received <= sent`; a gradient without timing carries 0 for both.
public struct WorkerTiming: Equatable, Sendable {
    public var received: UInt64
    public var sent: UInt64

    public init(received: UInt64, sent: UInt64) {
        self.received = received
        self.sent = sent
    }
}

/// Every message on the wire. `encode()` and `decode(_:)` in Message+Codec.swift are its only codec.
public enum Message: Equatable, Sendable {
    /// Worker → coordinator, the first message of a worker: who it is and which protocol it speaks.
    /// `session` changes whenever the worker starts over (new process or reconnect), so the coordinator
    /// can tell a duplicated hello (same session: ignored) from a worker that lost its state. Its upper
    /// 48 bits name the worker process (random per process), its lower 16 bits count the process's
    /// reconnects (`Session`): a newer session of the same process replaces the older one at once.
    case hello(protocolVersion: UInt16, workerName: String, threads: Int, session: UInt64)
    /// Coordinator → worker: accepted as worker `workerIndex` of `workerCount`, or as a spare when
    /// `workerIndex == workerCount` (sent again with a slot when the spare takes one).
    case welcome(workerIndex: Int, workerCount: Int)
    /// Coordinator → worker: not accepted (version mismatch, cluster full, evicted earlier).
    case refuse(protocolVersion: UInt16, reason: String)
    /// Coordinator → worker: blocks of the training set (a contiguous run of keys) plus opaque settings.
    /// A worker receives one at join and more when membership changes; it keeps them all.
    case shard(Shard)
    /// Worker → coordinator: the shard whose keys start at `firstKey` arrived and the worker can compute
    /// on it; echoes the shard's first key and sample count.
    case ready(firstKey: Int, sampleCount: Int)
    /// Coordinator → worker: compute the summed gradient of these samples at these weights.
    case step(StepAssignment)
    /// Worker → coordinator: the answer to `step`.
    case gradient(GradientReport)
    /// Either direction: "I am alive". Any message counts as a sign of life; this one says nothing else.
    case heartbeat
    /// Coordinator → worker: training is over (finished or failed); the worker exits.
    case shutdown(reason: String)
    /// Worker → coordinator: the worker is leaving (interrupted, failed to compute); treat it as dead.
    case goodbye(reason: String)

    /// The kind number written in the header.
    public var kind: MessageKind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .refuse: .refuse
        case .shard: .shard
        case .ready: .ready
        case .step: .step
        case .gradient: .gradient
        case .heartbeat: .heartbeat
        case .shutdown: .shutdown
        case .goodbye: .goodbye
        }
    }
}

/// A text from a peer as logs show it: at most `ProtocolInfo.maximumNameLength` characters (longer
/// ones cut, with "…"), control and format characters (newlines, escapes, bidirectional overrides)
/// written as escapes, so that no peer can forge or garble a log line.
public func printableName(_ text: String, maximumLength: Int = ProtocolInfo.maximumNameLength) -> String {
    var result = ""
    for (index, character) in text.enumerated() {
        guard index < maximumLength else { return result + "…" }
        for scalar in character.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                result += scalar.escaped(asASCII: true)
            default:
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result
}

/// The `session` of a hello: the worker process (upper 48 bits, random per process) and the number of
/// the process's reconnects (lower 16 bits). A higher count from the same process is a newer session.
public struct Session: Equatable, Sendable {
    public var process: UInt64
    public var reconnects: UInt16

    public init(process: UInt64, reconnects: UInt16) {
        self.process = process & 0xFFFF_FFFF_FFFF
        self.reconnects = reconnects
    }

    public init(_ value: UInt64) { self.init(process: value >> 16, reconnects: UInt16(truncatingIfNeeded: value)) }

    public var value: UInt64 { process << 16 | UInt64(reconnects) }
}

/// The identity of a peer as the transport sees it (for ZeroMQ: the ROUTER routing id of a worker).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }

    /// Printable ASCII is shown as text, anything else as hex (ZeroMQ's generated ids are binary).
    public var description: String {
        if !bytes.isEmpty, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        return "0x"
            + bytes.map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined()
    }
}
