// The coordinator state machine's vocabulary: its settings, the samples it shards, what it knows of a
// worker, a step's result, and the events it takes and the actions it returns. The machine itself is
// in Coordinator.swift.

/// The settings of a coordinator run. Durations are in ticks (see `ProtocolInfo.recommendedTickMilliseconds`).
public struct CoordinatorConfiguration: Sendable {
    /// How many workers must join before training starts.
    public var workerCount: Int
    /// Samples per global batch, across all workers.
    public var batchSize: Int
    /// Samples per micro-batch (`BatchPlan`); at most `BatchPlan.blockCount` workers hold slots.
    public var microBatchSize = BatchPlan.defaultMicroBatchSize
    /// Steps to run; the caller derives it from epochs with `BatchPlan.stepsPerEpoch`.
    public var totalSteps: Int
    /// The first step to run: 0, or the steps a checkpoint had done (its weights come with `start`).
    public var firstStep = 0
    /// Seeds the batch order (`BatchPlan`).
    public var seed: UInt64
    /// Opaque bytes sent to every worker with its shard (model shape, hyperparameters...).
    public var settings: [UInt8]
    /// Training goes on while at least this many workers hold blocks; fewer fail the run.
    public var minimumWorkers = 1
    /// Workers that join while every slot is taken wait as spares, up to this many (nil: `workerCount`);
    /// a spare takes the slot and the blocks of the next worker lost.
    public var maximumSpares: Int?
    /// Ticks to wait for all workers to join and report ready before failing.
    public var joinTimeoutTicks = 600
    /// A worker silent (no message of any kind) for more than this many ticks is dead.
    public var livenessTicks = 50
    /// Ticks between heartbeats to each worker.
    public var heartbeatIntervalTicks = 10
    /// Ticks after which an unanswered shard or step request is sent again (covers lost messages).
    public var resendTicks = 100
    /// A worker that has not answered a step request for this many ticks (while its heartbeats still
    /// arrive) is evicted and its micro-batches computed elsewhere. Nil: derived from the answers seen,
    /// ten times the slowest so far, never under `minimumStepTimeoutTicks`.
    public var stepTimeoutTicks: Int?
    public var minimumStepTimeoutTicks = 100
    /// The fraction of (worker, step) pairs whose answer is computed a second time, by the next member
    /// in slot order (which then holds a replica of that worker's blocks), and compared bit for bit; a
    /// disagreement is settled by the caller's own computation (`referee`) and the worker that differs
    /// from it is evicted. 0 turns auditing off. Needs at least two members.
    public var auditFraction = 0.0
    /// Seeds which pairs are audited. Keep it from the workers (the node draws it at random), or a
    /// dishonest one could lie only where no audit looks.
    public var auditSeed: UInt64 = 0
    /// The protocol version this coordinator speaks (tests set another one to provoke a mismatch).
    public var protocolVersion = ProtocolInfo.version
    /// The caller's tick length in seconds, used only to put durations into human words in failure
    /// reasons ("50 ticks (5.0 s)"); the machine itself never reads a clock.
    public var tickSecondsForMessages: Double?

    public init(workerCount: Int, batchSize: Int, totalSteps: Int, seed: UInt64, settings: [UInt8] = []) {
        self.workerCount = workerCount
        self.batchSize = batchSize
        self.totalSteps = totalSteps
        self.seed = seed
        self.settings = settings
    }
}

/// The training set the coordinator shards, as raw bytes.
public struct TrainingSamples: Sendable, Equatable {
    public var pixelsPerImage: Int
    /// `[count, pixelsPerImage]`
    public var images: [UInt8]
    /// `[count]`
    public var labels: [UInt8]

    public var count: Int { labels.count }

    public init(pixelsPerImage: Int, images: [UInt8], labels: [UInt8]) {
        precondition(images.count == labels.count * pixelsPerImage, "images must hold pixelsPerImage bytes per label")
        self.pixelsPerImage = pixelsPerImage
        self.images = images
        self.labels = labels
    }
}

/// A worker as the coordinator knows it.
public struct WorkerInfo: Equatable, Sendable, CustomStringConvertible {
    public var peer: PeerID
    public var name: String
    /// The worker's slot, 0..<workerCount, or nil while it waits as a spare.
    public var slot: Int?
    public var threads: Int
    /// The blocks whose micro-batches it computes each step (its share of the data), in order.
    public var blocks: [Int]

    public init(peer: PeerID, name: String, slot: Int?, threads: Int, blocks: [Int]) {
        self.peer = peer
        self.name = name
        self.slot = slot
        self.threads = threads
        self.blocks = blocks
    }

    public var description: String {
        slot.map { "worker \($0) \"\(name)\" (\(peer))" } ?? "spare \"\(name)\" (\(peer))"
    }
}

/// Blocks as short text: "0-3, 6".
public func describeBlocks(_ blocks: [Int]) -> String {
    var parts: [String] = []
    var index = 0
    let sorted = blocks.sorted()
    while index < sorted.count {
        var end = index
        while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
        parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
        index = end + 1
    }
    return parts.isEmpty ? "none" : parts.joined(separator: ", ")
}

/// The outcome of one synchronous step, ready for the optimizer.
public struct StepResult: Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    /// Samples in the global batch.
    public var sampleCount: Int
    public var lossSum: Double
    public var correctCount: Int
    /// The tree's root divided by `sampleCount` (`GradientTree.mean`; all zeros if it is 0): `[parameterCount]`.
    public var averagedGradient: [Float]
    /// The workers whose answers were used, each once, in the order of their first block.
    public var contributors: [PeerID]

    /// Mean loss per sample (0 when no sample contributed).
    public var meanLoss: Double { sampleCount > 0 ? lossSum / Double(sampleCount) : 0 }
}

extension StepResult {
    /// Finishes the tree over the reports' pieces and averages: the same additions in the same order
    /// whoever computed which micro-batch. Pieces missing from the tree are left out.
    ///
    /// Handing over the reports (`consume`) lets the mean be taken in place when one piece is the root.
    public init(
        step: Int, epoch: Int, reports: consuming [GradientReport], tree: GradientTree, parameterCount: Int,
        contributors: [PeerID] = []
    ) {
        var pieces = reports.flatMap(\.pieces)
        reports = []
        let complete = pieces.reduce(0) { $0 + $1.blocks.count } == tree.blockCount
        var root: GradientPiece
        if pieces.count == 1, pieces[0].blocks == 0..<tree.blockCount, tree.isNode(pieces[0].blocks) {
            root = pieces.removeLast()  // The root itself: no tree to finish.
        } else {
            root =
                (complete ? tree.sum(pieces) : tree.partialSum(pieces))
                ?? GradientPiece(
                    blocks: 0..<tree.blockCount, sampleCount: 0, correctCount: 0, lossSum: 0,
                    gradient: [Float](repeating: 0, count: parameterCount))
        }
        pieces = []
        let (samples, lossSum, correct) = (root.sampleCount, root.lossSum, root.correctCount)
        self.init(
            step: step, epoch: epoch, sampleCount: samples, lossSum: lossSum, correctCount: correct,
            averagedGradient: GradientTree.mean(of: consume root), contributors: contributors)
    }
}

/// Something that happened to the coordinator.
public enum CoordinatorEvent: Sendable {
    /// Begin accepting workers; training starts from these weights once all workers are ready.
    case start(initialWeights: [Float])
    /// A message arrived from a peer.
    case received(Message, from: PeerID)
    /// Frames arrived from a peer but did not decode; logged as ignored.
    case undecodable(MessageDecodingError, from: PeerID)
    /// One tick of time passed.
    case tick
    /// The caller applied the optimizer after `stepCompleted`; these are the weights for the next step.
    case weightsUpdated([Float])
    /// The caller's own computation of a `referee` request (nil if it cannot compute one).
    case refereed(blocks: [Int], GradientReport?)
    /// The caller wants to stop (interrupt). With `releaseWorkers` every worker is told to shut down;
    /// without, they are left to find the coordinator gone and wait for it to come back (a restart
    /// that resumes from a checkpoint).
    case stop(reason: String, releaseWorkers: Bool)
}

/// Something the caller must do or may report.
public enum CoordinatorAction: Equatable, Sendable {
    /// Encode `message` and send it to `peer`.
    case send(Message, to: PeerID)
    /// A worker was admitted (to a slot, or as a spare); `joined` of `expected` slots are now taken.
    case workerJoined(WorkerInfo, joined: Int, expected: Int, step: Int)
    /// The blocks changed hands at `step` (`why`: a worker joined, died...); `workers` are the members
    /// with their new shares. Blocks move with their samples; until they arrive, the micro-batches
    /// are computed where the samples are.
    case sharesChanged([WorkerInfo], step: Int, why: String)
    /// A peer was refused (the reason was also sent to it in a `refuse` message).
    case workerRefused(PeerID, name: String, reason: String)
    /// Every worker holds its shard; the first step (`firstStep`) is being sent.
    case trainingStarted([WorkerInfo])
    /// Every live worker answered the step: apply the optimizer, then deliver `weightsUpdated`.
    case stepCompleted(StepResult)
    /// A worker was declared dead (silent past the liveness window, left, reconnected, evicted for not
    /// answering, or answered wrongly); what it owed is computed by others.
    case workerDied(WorkerInfo, step: Int, reason: String)
    /// Two workers' answers for the same blocks differ in an audit: compute `assignment` over `shards`
    /// (the samples of its blocks) the way a worker does and deliver the result as `refereed`.
    case referee(StepAssignment, shards: [Shard])
    /// A message was ignored (unknown sender, stale or duplicate gradient...): worth a debug log line.
    case ignored(from: PeerID, kind: MessageKind?, reason: String)
    /// All steps are done and every worker was told to shut down.
    case finished
    /// The run cannot continue; the caller should write a checkpoint and exit non-zero.
    case failed(reason: String)
}
