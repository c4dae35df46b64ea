// The coordinator's protocol logic as a pure state machine: events in, actions out.
// It admits workers, sends each its shard (a contiguous run of the plan's blocks), runs synchronous
// steps (each worker answers with its micro-batches' gradients summed along the fixed tree, which
// the coordinator finishes and averages) and watches worker liveness in ticks. It never reads a clock, never
// touches a socket and knows nothing of the model: weights and gradients are flat [Float] slabs,
// and the caller applies the optimizer between `stepCompleted` and `weightsUpdated`.

/// What the coordinator does when a worker dies during training.
public enum WorkerDeathPolicy: Sendable, Equatable {
    /// Stop the run with `.failed` naming the worker and the step, so the caller can save the model.
    case stop
    /// Drop the worker and carry on; its blocks leave the later global batches (so the run is no
    /// longer the undisturbed one).
    case continueWithoutWorker
}

/// The settings of a coordinator run. Durations are in ticks (see `ProtocolInfo.recommendedTickMilliseconds`).
public struct CoordinatorConfiguration: Sendable {
    /// How many workers must join before training starts.
    public var workerCount: Int
    /// Samples per global batch, across all workers.
    public var batchSize: Int
    /// Samples per micro-batch (`BatchPlan`); at most `BatchPlan.blockCount` workers can join.
    public var microBatchSize = BatchPlan.defaultMicroBatchSize
    /// Steps to run; the caller derives it from epochs with `BatchPlan.stepsPerEpoch`.
    public var totalSteps: Int
    /// Seeds the batch order (`BatchPlan`).
    public var seed: UInt64
    /// Opaque bytes sent to every worker with its shard (model shape, hyperparameters...).
    public var settings: [UInt8]
    /// Ticks to wait for all workers to join and report ready before failing.
    public var joinTimeoutTicks = 600
    /// A worker silent (no message of any kind) for more than this many ticks is dead.
    public var livenessTicks = 50
    /// Ticks between heartbeats to each worker.
    public var heartbeatIntervalTicks = 10
    /// Ticks after which an unanswered shard or step request is sent again (covers lost messages).
    public var resendTicks = 100
    /// What to do when a worker dies during training.
    public var workerDeathPolicy = WorkerDeathPolicy.stop
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
    /// The worker's slot, 0..<workerCount; it decides the worker's shard.
    public var index: Int
    public var threads: Int
    /// The blocks of the plan this worker holds.
    public var blocks: Range<Int>
    public var shardSampleCount: Int

    public var description: String { "worker \(index) \"\(name)\" (\(peer))" }
}

/// The outcome of one synchronous step, ready for the optimizer.
public struct StepResult: Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    /// Samples that contributed (the global batch minus samples of dead workers).
    public var sampleCount: Int
    public var lossSum: Double
    public var correctCount: Int
    /// The tree's root divided by `sampleCount` (`GradientTree.mean`; all zeros if it is 0): `[parameterCount]`.
    public var averagedGradient: [Float]
    /// The workers whose gradients were applied, in worker-index order; exactly one entry per live worker.
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
    /// The caller wants to stop (interrupt): shut every worker down.
    case stop(reason: String)
}

/// Something the caller must do or may report.
public enum CoordinatorAction: Equatable, Sendable {
    /// Encode `message` and send it to `peer`.
    case send(Message, to: PeerID)
    /// A worker was admitted; `joined` of `expected` slots are now taken.
    case workerJoined(WorkerInfo, joined: Int, expected: Int)
    /// A peer was refused (the reason was also sent to it in a `refuse` message).
    case workerRefused(PeerID, name: String, reason: String)
    /// Every worker holds its shard; step 0 is being sent.
    case trainingStarted([WorkerInfo])
    /// Every live worker answered the step: apply the optimizer, then deliver `weightsUpdated`.
    case stepCompleted(StepResult)
    /// A worker was declared dead (silent past the liveness window, left, rejoined, or misbehaved).
    case workerDied(WorkerInfo, step: Int, reason: String)
    /// A message was ignored (unknown sender, stale or duplicate gradient...): worth a debug log line.
    case ignored(from: PeerID, kind: MessageKind?, reason: String)
    /// All steps are done and every worker was told to shut down.
    case finished
    /// The run cannot continue; the caller should save the model so far and exit non-zero.
    case failed(reason: String)
}

/// The coordinator state machine. Drive it with `handle(_:)` and perform the returned actions in order.
///
/// Invariants (tested against a simulated cluster): steps complete in order 0, 1, 2...; each completed
/// step uses exactly one gradient from every live worker and none from anyone else; a gradient for
/// another step, a duplicate, or one from an unknown peer is ignored; a worker silent for more than
/// `livenessTicks` ticks is declared dead on the next tick.
public struct Coordinator {
    public enum Phase: Equatable, Sendable {
        case idle, joining, training, finished, failed
    }

    private struct WorkerState {
        var info: WorkerInfo
        var session: UInt64
        var silentTicks = 0
        var isReady = false
        var ticksSinceRequest = 0
    }

    public let configuration: CoordinatorConfiguration
    public let plan: BatchPlan
    public private(set) var phase = Phase.idle
    /// The step being gathered, or the next one while the caller applies the optimizer.
    public private(set) var step = 0

    private var data: TrainingSamples
    /// `plan.layoutOrder`, computed when the first shard is cut.
    private var layoutOrder: [Int] = []
    private var workers: [PeerID: WorkerState] = [:]
    private var departed: Set<PeerID> = []
    private var ticksSinceStart = 0
    private var ticksSinceHeartbeat = 0
    /// The weights of the step being gathered; released once it completes, so that the caller's
    /// optimizer updates its own copy in place instead of copying it.
    private var weights: [Float] = []
    private var parameterCount = 0
    private var isGathering = false
    private var received: [PeerID: GradientReport] = [:]
    /// The keys of each block's micro-batch in the current step.
    private var microBatches: [ArraySlice<Int>] = []
    private var batches: StepBatches
    public let tree: GradientTree

    public init(configuration: CoordinatorConfiguration, data: TrainingSamples) {
        self.configuration = configuration
        self.data = data
        self.plan = BatchPlan(
            sampleCount: max(1, data.count), batchSize: max(1, configuration.batchSize), seed: configuration.seed,
            microBatchSize: configuration.microBatchSize)
        self.tree = GradientTree(blockCount: plan.blockCount)
        self.batches = StepBatches(plan: plan)
    }

    /// The workers currently alive, in index order.
    public var liveWorkers: [WorkerInfo] { sortedWorkers.map(\.info) }

    private var sortedWorkers: [WorkerState] { workers.values.sorted { $0.info.index < $1.info.index } }

    /// Feeds one event; returns the actions to perform, in order.
    public mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorAction] {
        var actions: [CoordinatorAction] = []
        switch event {
        case .start(let initialWeights):
            guard phase == .idle else { break }
            guard (1...plan.blockCount).contains(configuration.workerCount), data.count > 0 else {
                fail(
                    "\(configuration.workerCount) workers cannot share the \(plan.blockCount) micro-batches of a "
                        + "batch of \(configuration.batchSize): use 1...\(plan.blockCount) workers or a larger batch",
                    into: &actions)
                break
            }
            weights = initialWeights
            parameterCount = initialWeights.count
            phase = .joining
        case .received(let message, let peer):
            receive(message, from: peer, into: &actions)
        case .undecodable(let error, let peer):
            actions.append(.ignored(from: peer, kind: nil, reason: "undecodable message: \(error)"))
        case .tick:
            tick(into: &actions)
        case .weightsUpdated(let newWeights):
            guard phase == .training, !isGathering else { break }
            guard newWeights.count == parameterCount else {
                fail(
                    "weights changed size from \(parameterCount) to \(newWeights.count) after step \(step)",
                    into: &actions)
                break
            }
            weights = newWeights
            step += 1
            beginStep(into: &actions)
        case .stop(let reason):
            guard phase == .joining || phase == .training else { break }
            fail("stopped at step \(step): \(reason)", into: &actions)
        }
        return actions
    }

    // MARK: Messages

    private mutating func receive(_ message: Message, from peer: PeerID, into actions: inout [CoordinatorAction]) {
        guard phase == .joining || phase == .training else {
            actions.append(.ignored(from: peer, kind: message.kind, reason: "coordinator is \(phase)"))
            return
        }
        if case .hello(let version, let name, let threads, let session) = message {
            hello(from: peer, version: version, name: name, threads: threads, session: session, into: &actions)
            return
        }
        guard workers[peer] != nil else {
            let why = departed.contains(peer) ? "sender was declared dead" : "unknown sender"
            actions.append(.ignored(from: peer, kind: message.kind, reason: why))
            return
        }
        workers[peer]?.silentTicks = 0
        switch message {
        case .heartbeat:
            break
        case .ready(let sampleCount):
            ready(from: peer, sampleCount: sampleCount, into: &actions)
        case .gradient(let report):
            gradient(report, from: peer, into: &actions)
        case .goodbye(let reason):
            workerDied(peer, reason: "left: \(reason)", into: &actions)
        case .hello, .welcome, .refuse, .shard, .step, .shutdown:
            actions.append(.ignored(from: peer, kind: message.kind, reason: "not a worker-to-coordinator message"))
        }
    }

    private mutating func hello(
        from peer: PeerID, version: UInt16, name: String, threads: Int, session: UInt64,
        into actions: inout [CoordinatorAction]
    ) {
        if let known = workers[peer], known.session == session {
            workers[peer]?.silentTicks = 0
            actions.append(.ignored(from: peer, kind: .hello, reason: "duplicate hello (session \(session))"))
            return
        }
        guard version == configuration.protocolVersion else {
            refuse(
                peer, name: name,
                reason: "protocol version mismatch: worker speaks version \(version), "
                    + "coordinator speaks version \(configuration.protocolVersion); run the same release on both",
                into: &actions)
            return
        }
        if phase == .training {
            if workers[peer] != nil {
                workerDied(peer, reason: "said hello again mid-run, so it lost its shard and step", into: &actions)
            }
            refuse(
                peer, name: name, reason: "training is under way (step \(step)); workers cannot join a running job",
                into: &actions)
            return
        }
        let index: Int
        if let existing = workers[peer] {
            index = existing.info.index  // The worker restarted while joining: give it its slot again.
        } else {
            let taken = Set(workers.values.map(\.info.index))
            guard let free = (0..<configuration.workerCount).first(where: { !taken.contains($0) }) else {
                refuse(
                    peer, name: name,
                    reason: "cluster is full: all \(configuration.workerCount) worker slots are taken",
                    into: &actions)
                return
            }
            index = free
        }
        let blocks = plan.shardBlocks(worker: index, of: configuration.workerCount)
        let info = WorkerInfo(
            peer: peer, name: name, index: index, threads: threads, blocks: blocks,
            shardSampleCount: plan.keyRange(blocks: blocks).count)
        workers[peer] = WorkerState(info: info, session: session)
        departed.remove(peer)
        actions.append(.workerJoined(info, joined: workers.count, expected: configuration.workerCount))
        actions.append(.send(.welcome(workerIndex: index, workerCount: configuration.workerCount), to: peer))
        actions.append(.send(shardMessage(for: index), to: peer))
    }

    /// The worker's blocks: the samples of its key range, in key order.
    private mutating func shardMessage(for index: Int) -> Message {
        let keys = plan.keyRange(blocks: plan.shardBlocks(worker: index, of: configuration.workerCount))
        if layoutOrder.isEmpty { layoutOrder = plan.layoutOrder }
        let pixels = data.pixelsPerImage
        var images = [UInt8](repeating: 0, count: keys.count * pixels)
        var labels = [UInt8](repeating: 0, count: keys.count)
        for (local, key) in keys.enumerated() {
            let sample = layoutOrder[key]
            labels[local] = data.labels[sample]
            images[(local * pixels)..<((local + 1) * pixels)] = data.images[(sample * pixels)..<((sample + 1) * pixels)]
        }
        return .shard(
            Shard(
                pixelsPerImage: pixels, images: images, labels: labels, settings: configuration.settings,
                firstKey: keys.lowerBound))
    }

    private mutating func refuse(_ peer: PeerID, name: String, reason: String, into actions: inout [CoordinatorAction])
    {
        actions.append(.workerRefused(peer, name: name, reason: reason))
        actions.append(.send(.refuse(protocolVersion: configuration.protocolVersion, reason: reason), to: peer))
    }

    private mutating func ready(from peer: PeerID, sampleCount: Int, into actions: inout [CoordinatorAction]) {
        guard let worker = workers[peer], phase == .joining, !worker.isReady else {
            actions.append(.ignored(from: peer, kind: .ready, reason: "duplicate ready"))
            return
        }
        guard sampleCount == worker.info.shardSampleCount else {
            workerDied(
                peer, reason: "reported \(sampleCount) samples, its shard has \(worker.info.shardSampleCount)",
                into: &actions)
            return
        }
        workers[peer]?.isReady = true
        if workers.count == configuration.workerCount, workers.values.allSatisfy(\.isReady) {
            phase = .training
            data = TrainingSamples(pixelsPerImage: data.pixelsPerImage, images: [], labels: [])  // Shards are out.
            actions.append(.trainingStarted(liveWorkers))
            beginStep(into: &actions)
        }
    }

    private mutating func gradient(_ report: GradientReport, from peer: PeerID, into actions: inout [CoordinatorAction])
    {
        guard phase == .training, isGathering, report.step == step else {
            actions.append(
                .ignored(
                    from: peer, kind: .gradient,
                    reason:
                        "gradient for step \(report.step) while \(isGathering ? "gathering" : "applying") step \(step)")
            )
            return
        }
        guard received[peer] == nil else {
            actions.append(.ignored(from: peer, kind: .gradient, reason: "duplicate gradient for step \(step)"))
            return
        }
        guard let worker = workers[peer] else { return }
        if let problem = problem(with: report, owed: worker.info.blocks) {
            workerDied(peer, reason: "answered step \(step) wrongly: \(problem)", into: &actions)
            return
        }
        received[peer] = report
        completeStepIfGathered(into: &actions)
    }

    /// What is wrong with a report for blocks `owed`, or nil: its pieces must be disjoint nodes of the
    /// tree covering exactly those blocks, each with this step's sample count and a full gradient.
    private func problem(with report: GradientReport, owed: Range<Int>) -> String? {
        var covered = 0
        for piece in report.pieces {
            guard tree.isNode(piece.blocks) else { return "blocks \(piece.blocks) are not a node of the tree" }
            guard owed.contains(piece.blocks.lowerBound), piece.blocks.upperBound <= owed.upperBound else {
                return "blocks \(piece.blocks) are not among its blocks \(owed)"
            }
            let expected = piece.blocks.reduce(0) { $0 + microBatches[$1].count }
            guard piece.sampleCount == expected, piece.gradient.count == parameterCount else {
                return "\(piece.gradient.count) gradient values for \(piece.sampleCount) samples of blocks "
                    + "\(piece.blocks); expected \(parameterCount) values for \(expected) samples"
            }
            covered += piece.blocks.count
        }
        let distinct = Set(report.pieces.flatMap { Array($0.blocks) })
        guard covered == owed.count, distinct.count == owed.count else {
            return "its pieces cover blocks \(distinct.sorted()), it owes \(owed)"
        }
        return nil
    }

    // MARK: Steps

    private mutating func beginStep(into actions: inout [CoordinatorAction]) {
        guard step < configuration.totalSteps else {
            phase = .finished
            for worker in sortedWorkers {
                actions.append(
                    .send(
                        .shutdown(reason: "training finished after \(configuration.totalSteps) steps"),
                        to: worker.info.peer))
            }
            actions.append(.finished)
            return
        }
        microBatches = batches.microBatches(step: step)
        isGathering = true
        received = [:]
        for worker in sortedWorkers {
            workers[worker.info.peer]?.ticksSinceRequest = 0
            actions.append(.send(stepMessage(for: worker.info.index), to: worker.info.peer))
        }
    }

    private func stepMessage(for index: Int) -> Message {
        .step(
            plan.assignment(
                step: step, blocks: plan.shardBlocks(worker: index, of: configuration.workerCount),
                microBatches: microBatches, weights: weights))
    }

    private mutating func completeStepIfGathered(into actions: inout [CoordinatorAction]) {
        guard phase == .training, isGathering, !workers.isEmpty,
            workers.keys.allSatisfy({ received[$0] != nil })
        else { return }
        let reports = sortedWorkers.compactMap { received[$0.info.peer] }
        let result = StepResult(
            step: step, epoch: plan.epoch(ofStep: step), reports: reports, tree: tree, parameterCount: parameterCount,
            contributors: sortedWorkers.compactMap { received[$0.info.peer] != nil ? $0.info.peer : nil })
        isGathering = false
        received = [:]
        weights = []
        actions.append(.stepCompleted(result))
    }

    // MARK: Time and death

    private mutating func tick(into actions: inout [CoordinatorAction]) {
        guard phase == .joining || phase == .training else { return }
        ticksSinceStart += 1
        ticksSinceHeartbeat += 1
        let sendHeartbeat = ticksSinceHeartbeat >= configuration.heartbeatIntervalTicks
        if sendHeartbeat { ticksSinceHeartbeat = 0 }
        for worker in sortedWorkers {
            let peer = worker.info.peer
            guard workers[peer] != nil, phase == .joining || phase == .training else { continue }
            workers[peer]?.silentTicks += 1
            if worker.silentTicks + 1 > configuration.livenessTicks {
                workerDied(
                    peer,
                    reason: "silent for \(describeTicks(worker.silentTicks + 1, configuration.tickSecondsForMessages)) "
                        + "(liveness window \(describeTicks(configuration.livenessTicks, configuration.tickSecondsForMessages)))",
                    into: &actions)
                continue
            }
            if sendHeartbeat { actions.append(.send(.heartbeat, to: peer)) }
            let awaiting = phase == .joining ? !worker.isReady : (isGathering && received[peer] == nil)
            guard awaiting else { continue }
            workers[peer]?.ticksSinceRequest += 1
            if worker.ticksSinceRequest + 1 >= configuration.resendTicks {
                workers[peer]?.ticksSinceRequest = 0
                if phase == .joining {
                    // The welcome may be what was lost: a worker ignores a shard before its welcome.
                    actions.append(
                        .send(
                            .welcome(workerIndex: worker.info.index, workerCount: configuration.workerCount),
                            to: peer))
                    actions.append(.send(shardMessage(for: worker.info.index), to: peer))
                } else {
                    actions.append(.send(stepMessage(for: worker.info.index), to: peer))
                }
            }
        }
        if phase == .joining && ticksSinceStart > configuration.joinTimeoutTicks {
            let joined = sortedWorkers.map { "\($0.info)\($0.isReady ? " ready" : " still loading its shard")" }
            fail(
                "only \(workers.count) of \(configuration.workerCount) workers joined and got ready within "
                    + "\(describeTicks(configuration.joinTimeoutTicks, configuration.tickSecondsForMessages)) (joined: \(joined.isEmpty ? "none" : joined.joined(separator: ", ")))",
                into: &actions)
        }
    }

    private mutating func workerDied(_ peer: PeerID, reason: String, into actions: inout [CoordinatorAction]) {
        guard let worker = workers.removeValue(forKey: peer) else { return }
        departed.insert(peer)
        received[peer] = nil
        actions.append(.workerDied(worker.info, step: step, reason: reason))
        if phase == .joining { return }  // Its slot is free again for the next hello.
        if configuration.workerDeathPolicy == .stop || workers.isEmpty {
            actions.append(.send(.shutdown(reason: "coordinator stopping: \(worker.info) died"), to: peer))
            fail("\(worker.info) died at step \(step): \(reason)", into: &actions)
        } else {
            completeStepIfGathered(into: &actions)
        }
    }

    private mutating func fail(_ reason: String, into actions: inout [CoordinatorAction]) {
        for worker in sortedWorkers {
            actions.append(.send(.shutdown(reason: "coordinator stopping: \(reason)"), to: worker.info.peer))
        }
        phase = .failed
        actions.append(.failed(reason: reason))
    }
}

/// "N ticks", or "N ticks (S.s s)" when the caller said how long a tick is.
func describeTicks(_ ticks: Int, _ tickSeconds: Double?) -> String {
    let product = tickSeconds.map { Double(ticks) * $0 * 10 }
    guard let product, product.isFinite, abs(product) < 1e15 else { return "\(ticks) ticks" }
    let tenths = Int(product.rounded())
    return "\(ticks) ticks (\(tenths / 10).\(tenths % 10) s)"
}
