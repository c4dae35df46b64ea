// An in-memory cluster for protocol tests: one Coordinator and N Worker state machines joined by a
// simulated network that encodes and decodes every message, and can drop, duplicate, delay and reorder
// messages, kill, pause, wedge and restart workers, start more of them late, and kill the coordinator
// and start it again from a checkpoint, all driven by one seed. Time is ticks; nothing here sleeps or opens a socket.
// Workers compute a synthetic "gradient" that is a plain sum of per-sample vectors, so a test can check
// the coordinator's sample-weighted mean against a naive full-batch computation.
import DataParallel

/// The simulations' seeded generator: TestSupport's SplitMix64. Print the seed when a test fails.
public typealias ClusterRandom = TestGenerator

extension TestGenerator {
    /// True with probability `probability`.
    public mutating func chance(_ probability: Double) -> Bool {
        probability > 0 && Double.random(in: 0..<1, using: &self) < probability
    }
}

/// The settings and faults of one simulated run.
public struct ClusterOptions: Sendable {
    public var workerCount = 3
    public var sampleCount = 47
    public var pixelsPerImage = 5
    public var parameterCount = 7
    public var batchSize = 10
    /// Samples per micro-batch: with the batch size, how many blocks (and so workers at most) there are.
    public var microBatchSize = 2
    public var totalSteps = 12
    /// Probability that any one message is lost.
    public var dropProbability = 0.0
    /// Probability that any one message is delivered twice.
    public var duplicateProbability = 0.0
    /// Each message takes 1 + uniform(0...maximumDelayTicks) ticks to arrive.
    public var maximumDelayTicks = 0
    /// If false, each link is FIFO like a TCP connection; if true, delays may reorder messages.
    public var reorders = false
    /// Ticks a worker takes to compute a gradient.
    public var computeTicks: ClosedRange<Int> = 0...2
    /// Workers (by index) to kill, and the tick at which each falls silent.
    public var kills: [Int: Int] = [:]
    /// Workers (by index) to pause, as a stopped process: from `tick` they neither hear nor speak nor
    /// tick for `ticks`, then go on where they were.
    public var pauses: [Int: Pause] = [:]
    /// Workers (by index) that stop computing from this tick while their heartbeats go on.
    public var wedges: [Int: Int] = [:]
    /// Workers (by index) whose answers carry a NaN (in one gradient value) from this tick on.
    public var poisons: [Int: Int] = [:]
    /// Workers (by index) whose answers have one gradient value off by one (finite, wrong) from this tick on.
    public var liars: [Int: Int] = [:]
    /// Workers (by index) that answer with one piece per block instead of adding them along the tree
    /// first (as a worker in another language may).
    public var leafAnswers: Set<Int> = []
    /// The coordinator's `auditFraction` (and its audit seed: the run's seed).
    public var auditFraction = 0.0
    /// Workers (by index) restarted as a new process (new identity, nothing held) at this tick.
    public var restarts: [Int: Int] = [:]
    /// Ticks at which further workers start (they join late, or wait as spares).
    public var lateJoins: [Int] = []
    /// The coordinator keeps a checkpoint after `checkpointStep` steps, is killed `downAfterTicks`
    /// later and started again from the checkpoint after `downTicks`.
    public var coordinatorRestart: CoordinatorRestart?
    public var minimumWorkers = 1
    public var maximumSpares: Int?
    public var stepTimeoutTicks: Int?
    public var minimumStepTimeoutTicks = 60
    public var livenessTicks = 30
    public var heartbeatIntervalTicks = 3
    public var resendTicks = 15
    public var joinTimeoutTicks = 400
    public var coordinatorProtocolVersion = ProtocolInfo.version
    /// Per-worker protocol versions; missing entries speak `ProtocolInfo.version`.
    public var workerProtocolVersions: [Int: UInt16] = [:]
    public var learningRate: Float = 0.05
    /// The run is abandoned (and reported as not over) after this many ticks.
    public var maximumTicks = 4000

    public init() {}
}

/// A pause of a worker process (SIGSTOP, then SIGCONT).
public struct Pause: Sendable {
    public var tick: Int
    public var ticks: Int
    public init(tick: Int, ticks: Int) {
        self.tick = tick
        self.ticks = ticks
    }
}

/// A restart of the coordinator from a checkpoint.
public struct CoordinatorRestart: Sendable {
    /// The checkpoint is kept when this many steps are done.
    public var checkpointStep: Int
    /// Ticks after the checkpoint at which the coordinator dies (its later steps are lost).
    public var downAfterTicks: Int
    /// Ticks until the new coordinator starts.
    public var downTicks: Int
    public init(checkpointStep: Int, downAfterTicks: Int, downTicks: Int) {
        self.checkpointStep = checkpointStep
        self.downAfterTicks = downAfterTicks
        self.downTicks = downTicks
    }
}

/// One coordinator and its workers on a simulated network.
public final class SimulatedCluster {
    public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
        case coordinator
        /// Worker process `index` on its connection number `connection` (each reconnect is a new socket).
        case worker(Int, connection: Int)

        public var description: String {
            switch self {
            case .coordinator: "coordinator"
            case .worker(let index, let connection): "worker-\(index).\(connection)"
            }
        }
    }

    public enum Outcome: Equatable, Sendable {
        case running, finished
        case failed(String)
    }

    /// A step as the coordinator completed it, with what the test needs to check it.
    public struct CompletedStep: Sendable {
        public var result: StepResult
        /// The weights the coordinator sent for this step.
        public var weights: [Float]
        public var tick: Int
    }

    private struct Packet {
        var deliverAt: Int
        var sequence: Int
        var from: Endpoint
        var to: Endpoint
        var frames: [[UInt8]]
    }

    private struct Computation {
        var dueTick: Int
        var worker: Int
        var generation: Int
        var assignment: StepAssignment
    }

    public let seed: UInt64
    public let options: ClusterOptions
    public let data: TrainingSamples
    public let initialWeights: [Float]
    public private(set) var coordinator: Coordinator
    public private(set) var workers: [Worker] = []
    public private(set) var isAlive: [Bool] = []
    public private(set) var now = 0
    public private(set) var outcome = Outcome.running
    /// The weights after the last completed step: the trained model.
    public private(set) var weights: [Float]

    // Records for the invariants.
    /// The steps of the run as it stands (after a coordinator restart, those redone replace the lost ones).
    public private(set) var completedSteps: [CompletedStep] = []
    public private(set) var coordinatorLog: [(tick: Int, action: CoordinatorAction)] = []
    public private(set) var workerLogs: [[(tick: Int, action: WorkerAction)]] = []
    public private(set) var deaths: [(tick: Int, peer: PeerID, step: Int, reason: String)] = []
    public private(set) var decodeFailures: [String] = []
    public private(set) var messagesSent = 0
    public private(set) var messagesDropped = 0
    public private(set) var coordinatorRestarts = 0
    /// Disagreements the coordinator handed to its referee.
    public private(set) var refereed = 0

    private var random: ClusterRandom
    private var network: [Packet] = []
    private var sequence = 0
    private var lastDelivery: [Endpoint: [Endpoint: Int]] = [:]
    private var computations: [Computation] = []
    private var connection: [Int] = []
    private var generation: [Int] = []
    private var pausedUntil: [Int] = []
    private var wedged: [Bool] = []
    /// Each worker's samples by key, from the shards it holds.
    private var held: [[Int: (pixels: ArraySlice<UInt8>, label: UInt8)]] = []
    private var coordinatorDownUntil: Int?
    private var coordinatorDiesAt: Int?
    private var checkpoint: (step: Int, weights: [Float])?

    /// The peer id of worker `index`'s first connection.
    public static func peer(ofWorker index: Int) -> PeerID { peer(index, connection: 0) }

    public static func peer(_ index: Int, connection: Int) -> PeerID {
        PeerID(connection == 0 ? "worker-\(index)" : "worker-\(index).\(connection)")
    }

    public init(seed: UInt64, options: ClusterOptions = ClusterOptions()) {
        self.seed = seed
        self.options = options
        var random = ClusterRandom(seed: seed)
        let images = (0..<(options.sampleCount * options.pixelsPerImage)).map { _ in
            UInt8.random(in: 0...255, using: &random)
        }
        let labels = (0..<options.sampleCount).map { _ in UInt8.random(in: 0...9, using: &random) }
        data = TrainingSamples(pixelsPerImage: options.pixelsPerImage, images: images, labels: labels)
        initialWeights = (0..<options.parameterCount).map { _ in Float.random(in: -1...1, using: &random) }
        weights = initialWeights
        self.random = random
        coordinator = Self.makeCoordinator(options: options, seed: seed, data: data, firstStep: 0)
        for _ in 0..<options.workerCount { addWorkerProcess() }
    }

    private static func makeCoordinator(
        options: ClusterOptions, seed: UInt64, data: TrainingSamples, firstStep: Int
    ) -> Coordinator {
        var configuration = CoordinatorConfiguration(
            workerCount: options.workerCount, batchSize: options.batchSize,
            totalSteps: options.totalSteps, seed: seed, settings: [1, 2, 3])
        configuration.microBatchSize = options.microBatchSize
        configuration.firstStep = firstStep
        configuration.joinTimeoutTicks = options.joinTimeoutTicks
        configuration.livenessTicks = options.livenessTicks
        configuration.heartbeatIntervalTicks = options.heartbeatIntervalTicks
        configuration.resendTicks = options.resendTicks
        configuration.minimumWorkers = options.minimumWorkers
        configuration.maximumSpares = options.maximumSpares
        configuration.stepTimeoutTicks = options.stepTimeoutTicks
        configuration.minimumStepTimeoutTicks = options.minimumStepTimeoutTicks
        configuration.protocolVersion = options.coordinatorProtocolVersion
        configuration.auditFraction = options.auditFraction
        configuration.auditSeed = seed &* 31
        return Coordinator(configuration: configuration, data: data)
    }

    /// Adds a worker process (not started); returns its index.
    @discardableResult
    private func addWorkerProcess() -> Int {
        let index = workers.count
        var configuration = WorkerConfiguration(name: "sim-\(index)", threads: 1)
        configuration.livenessTicks = options.livenessTicks
        configuration.heartbeatIntervalTicks = options.heartbeatIntervalTicks
        configuration.initialBackoffTicks = 3
        configuration.maximumBackoffTicks = 24
        configuration.maximumReconnectAttempts = 1000
        configuration.protocolVersion = options.workerProtocolVersions[index] ?? ProtocolInfo.version
        configuration.incarnation = UInt64(index + 1) << 20 | UInt64(connection.count)
        workers.append(Worker(configuration: configuration))
        isAlive.append(true)
        connection.append(0)
        generation.append(0)
        pausedUntil.append(0)
        wedged.append(false)
        held.append([:])
        workerLogs.append([])
        return index
    }

    /// A description of the run for failure messages: the seed first, so the run can be replayed.
    public var summary: String {
        "seed \(seed): tick \(now), outcome \(outcome), \(completedSteps.count) steps, "
            + "\(messagesSent) messages sent, \(messagesDropped) dropped, "
            + "deaths \(deaths.map { "\($0.peer)@\($0.tick) (\($0.reason))" }), restarts \(coordinatorRestarts)"
    }

    // MARK: Driving

    /// Starts every node and runs ticks until the coordinator is finished or failed (plus a few ticks so
    /// shutdown messages land), or until `maximumTicks`.
    public func run() {
        start()
        var drainTicks = options.maximumDelayTicks + 2
        while now < options.maximumTicks {
            advance()
            if outcome != .running {
                drainTicks -= 1
                if drainTicks < 0 { break }
            }
        }
    }

    public func start() {
        feedCoordinator(.start(initialWeights: initialWeights))
        for index in workers.indices { feedWorker(index, .start) }
    }

    private var coordinatorIsUp: Bool { coordinatorDownUntil == nil }

    /// One tick: faults due now, deliver due messages, finish due computations, then tick every node.
    public func advance() {
        now += 1
        for (index, tick) in options.kills where tick == now { kill(worker: index) }
        for (index, pause) in options.pauses where pause.tick == now { pausedUntil[index] = now + pause.ticks }
        for (index, tick) in options.wedges where tick == now { wedged[index] = true }
        for (index, tick) in options.restarts.sorted(by: { $0.key < $1.key }) where tick == now {
            restart(worker: index)
        }
        for tick in options.lateJoins where tick == now { feedWorker(addWorkerProcess(), .start) }
        if let dies = coordinatorDiesAt, dies == now, let restart = options.coordinatorRestart {
            coordinatorDiesAt = nil
            coordinatorDownUntil = now + restart.downTicks
        }
        if let until = coordinatorDownUntil, until <= now, let checkpoint {
            coordinatorDownUntil = nil
            coordinatorRestarts += 1
            coordinator = Self.makeCoordinator(options: options, seed: seed, data: data, firstStep: checkpoint.step)
            weights = checkpoint.weights
            completedSteps.removeAll { $0.result.step >= checkpoint.step }
            outcome = .running
            feedCoordinator(.start(initialWeights: checkpoint.weights))
        }
        deliverDueMessages()
        let due = computations.filter { $0.dueTick <= now }
        computations.removeAll { $0.dueTick <= now }
        for computation in due {
            let index = computation.worker
            guard isAlive[index], computation.generation == generation[index] else { continue }
            if wedged[index] { continue }  // Never answers.
            if pausedUntil[index] > now {  // Goes on after the pause.
                var later = computation
                later.dueTick = pausedUntil[index]
                computations.append(later)
                continue
            }
            var report = syntheticReport(worker: index, assignment: computation.assignment)
            if let from = options.poisons[index], now >= from, !report.pieces.isEmpty {
                report.pieces[0].gradient[0] = .nan
            }
            if let from = options.liars[index], now >= from, !report.pieces.isEmpty {
                report.pieces[0].gradient[0] += 1
            }
            feedWorker(index, .gradientComputed(report))
        }
        if coordinatorIsUp { feedCoordinator(.tick) }
        for index in workers.indices where isAlive[index] && pausedUntil[index] <= now { feedWorker(index, .tick) }
    }

    /// Makes worker `index` fall silent: it processes and sends nothing from now on.
    public func kill(worker index: Int) {
        isAlive[index] = false
        computations.removeAll { $0.worker == index }
    }

    /// Kills worker `index` and starts a new process in its place (a restarted pod): a new identity,
    /// nothing held.
    public func restart(worker index: Int) {
        kill(worker: index)
        let replacement = addWorkerProcess()
        feedWorker(replacement, .start)
    }

    /// Puts a message from any peer (for example an intruder) on the wire to the coordinator.
    public func inject(_ message: Message, from peer: PeerID) {
        feedCoordinator(.received(message, from: peer))
    }

    // MARK: Synthetic gradient

    /// Per-sample "gradient" of sample `index` at `weights`: linear in the sample, so the sum over a batch
    /// split across workers equals the sum over the whole batch.
    public static func sampleGradient(pixels: ArraySlice<UInt8>, label: UInt8, weights: [Float]) -> [Double] {
        let pixelCount = pixels.count
        return weights.indices.map { parameter in
            let pixel = Double(pixels[pixels.startIndex + parameter % max(1, pixelCount)]) / 255
            return pixel * (1 + Double(label)) + 0.1 * Double(weights[parameter]) * Double(label)
        }
    }

    /// Per-sample loss and correctness of the synthetic model.
    public static func sampleLoss(label: UInt8) -> (loss: Double, isCorrect: Bool) {
        (Double(label) * 0.25 + 0.5, label % 3 == 0)
    }

    private func syntheticReport(worker: Int, assignment: StepAssignment) -> GradientReport {
        let samples = held[worker]
        return Self.syntheticReport(
            assignment: assignment, tree: coordinator.tree, asLeaves: options.leafAnswers.contains(worker),
            sample: { samples[$0] })
    }

    /// Step `step` as one node holding every block computes it: the reference for bit-identity.
    public func singleNodeResult(step: Int, weights: [Float]) -> StepResult {
        let plan = coordinator.plan
        let layout = plan.layoutOrder
        let pixels = data.pixelsPerImage
        let assignment = plan.assignment(
            step: step, blocks: 0..<plan.blockCount, microBatches: plan.microBatches(step: step).map { $0[...] },
            weights: weights)
        let report = Self.syntheticReport(
            assignment: assignment, tree: coordinator.tree,
            sample: { key in
                let sample = layout[key]
                return (data.images[(sample * pixels)..<((sample + 1) * pixels)], data.labels[sample])
            })
        return StepResult(
            step: step, epoch: plan.epoch(ofStep: step), reports: [report], tree: coordinator.tree,
            parameterCount: weights.count)
    }

    /// A worker's report of the synthetic model: each micro-batch's per-sample gradients summed (in
    /// Double, then rounded to Float), the micro-batches added along `tree`. `sample` gives a key's
    /// pixels and label (nil: not held, which gives an answer with no pieces).
    public static func syntheticReport(
        assignment: StepAssignment, tree: GradientTree, asLeaves: Bool = false,
        sample: (Int) -> (pixels: ArraySlice<UInt8>, label: UInt8)?
    ) -> GradientReport {
        var leaves: [GradientPiece] = []
        for (microBatch, keys) in assignment.microBatchIndices {
            var sum = [Double](repeating: 0, count: assignment.weights.count)
            var lossSum = 0.0
            var correct = 0
            for key in keys.map(Int.init) {
                guard let (pixels, label) = sample(key) else {
                    return GradientReport(step: assignment.step, pieces: [])
                }
                let gradient = sampleGradient(pixels: pixels, label: label, weights: assignment.weights)
                for index in sum.indices { sum[index] += gradient[index] }
                let (loss, isCorrect) = sampleLoss(label: label)
                lossSum += loss
                if isCorrect { correct += 1 }
            }
            leaves.append(
                GradientPiece(
                    blocks: microBatch.block..<(microBatch.block + 1), sampleCount: keys.count, correctCount: correct,
                    lossSum: lossSum, gradient: sum.map { Float($0) }))
        }
        return GradientReport(
            step: assignment.step, pieces: asLeaves ? leaves : assignment.pieces(fromLeaves: leaves, tree: tree))
    }

    /// The synthetic report of a worker holding one shard.
    public static func syntheticReport(shard: Shard, assignment: StepAssignment, tree: GradientTree) -> GradientReport {
        syntheticReport(
            assignment: assignment, tree: tree,
            sample: { key in
                let local = key - shard.firstKey, pixels = shard.pixelsPerImage
                guard (0..<shard.sampleCount).contains(local) else { return nil }
                return (shard.images[(local * pixels)..<((local + 1) * pixels)], shard.labels[local])
            })
    }

    /// The naive mean gradient of step `step`'s global batch (every block) over the whole data set.
    public func naiveMeanGradient(step: Int, weights: [Float]) -> (gradient: [Double], samples: Int, lossSum: Double) {
        Self.naiveMeanGradient(
            plan: coordinator.plan, data: data, step: step, weights: weights,
            blocks: Array(0..<coordinator.plan.blockCount))
    }

    /// The naive mean gradient of the synthetic model over the micro-batches of `blocks` in step `step`.
    public static func naiveMeanGradient(
        plan: BatchPlan, data: TrainingSamples, step: Int, weights: [Float], blocks: [Int]
    ) -> (gradient: [Double], samples: Int, lossSum: Double) {
        let layout = plan.layoutOrder
        let microBatches = plan.microBatches(step: step)
        var sum = [Double](repeating: 0, count: weights.count)
        var count = 0
        var lossSum = 0.0
        for block in blocks.sorted() {
            for sample in microBatches[block].map({ layout[$0] }) {
                let pixels = data.images[(sample * data.pixelsPerImage)..<((sample + 1) * data.pixelsPerImage)]
                let gradient = sampleGradient(pixels: pixels, label: data.labels[sample], weights: weights)
                for index in sum.indices { sum[index] += gradient[index] }
                lossSum += sampleLoss(label: data.labels[sample]).loss
                count += 1
            }
        }
        return (sum.map { count > 0 ? $0 / Double(count) : 0 }, count, lossSum)
    }

    // MARK: Network

    private func endpoint(of peer: PeerID) -> Endpoint? {
        for index in workers.indices where Self.peer(index, connection: connection[index]) == peer {
            return .worker(index, connection: connection[index])
        }
        return nil
    }

    private func transmit(_ message: Message, from: Endpoint, to: Endpoint) {
        messagesSent += 1
        if random.chance(options.dropProbability) {
            messagesDropped += 1
            return
        }
        let copies = random.chance(options.duplicateProbability) ? 2 : 1
        for _ in 0..<copies {
            var deliverAt = now + 1 + Int.random(in: 0...options.maximumDelayTicks, using: &random)
            if !options.reorders {
                deliverAt = max(deliverAt, lastDelivery[from]?[to] ?? 0)
                lastDelivery[from, default: [:]][to] = deliverAt
            }
            sequence += 1
            network.append(
                Packet(deliverAt: deliverAt, sequence: sequence, from: from, to: to, frames: message.encode()))
        }
    }

    private func deliverDueMessages() {
        let due = network.filter { $0.deliverAt <= now }.sorted {
            ($0.deliverAt, $0.sequence) < ($1.deliverAt, $1.sequence)
        }
        network.removeAll { $0.deliverAt <= now }
        for packet in due {
            let message: Message
            do {
                message = try Message.decode(packet.frames)
            } catch {
                decodeFailures.append("\(packet.from) -> \(packet.to): \(error)")
                continue
            }
            switch packet.to {
            case .coordinator:
                guard coordinatorIsUp, case .worker(let index, let from) = packet.from else { continue }
                feedCoordinator(.received(message, from: Self.peer(index, connection: from)))
            case .worker(let index, let to):
                // A stopped process's socket still queues what arrives; a closed socket drops it.
                guard isAlive[index], to == connection[index] else { continue }
                if pausedUntil[index] > now {
                    network.append(
                        Packet(
                            deliverAt: pausedUntil[index], sequence: packet.sequence, from: packet.from,
                            to: packet.to, frames: packet.frames))
                    continue
                }
                feedWorker(index, .received(message))
            }
        }
    }

    // MARK: Nodes

    private func feedCoordinator(_ first: CoordinatorEvent) {
        var events = [first]
        while !events.isEmpty {
            let event = events.removeFirst()
            for action in coordinator.handle(event) {
                coordinatorLog.append((now, action))
                switch action {
                case .send(let message, let peer):
                    if let destination = endpoint(of: peer) { transmit(message, from: .coordinator, to: destination) }
                case .workerDied(let info, let step, let reason):
                    deaths.append((now, info.peer, step, reason))
                case .stepCompleted(let result):
                    completedSteps.append(CompletedStep(result: result, weights: weights, tick: now))
                    weights = zip(weights, result.averagedGradient).map { $0 - options.learningRate * $1 }
                    if let restart = options.coordinatorRestart, result.step + 1 == restart.checkpointStep,
                        coordinatorRestarts == 0
                    {
                        checkpoint = (result.step + 1, weights)
                        coordinatorDiesAt = now + max(1, restart.downAfterTicks)
                    }
                    events.append(.weightsUpdated(weights))
                case .finished:
                    outcome = .finished
                case .failed(let reason):
                    outcome = .failed(reason)
                case .referee(let assignment, let shards):
                    // The coordinator's own computation, from the samples it was handed.
                    var samples: [Int: (pixels: ArraySlice<UInt8>, label: UInt8)] = [:]
                    for shard in shards {
                        let pixels = shard.pixelsPerImage
                        for local in 0..<shard.sampleCount {
                            samples[shard.firstKey + local] = (
                                shard.images[(local * pixels)..<((local + 1) * pixels)], shard.labels[local]
                            )
                        }
                    }
                    refereed += 1
                    let report = Self.syntheticReport(
                        assignment: assignment, tree: coordinator.tree, sample: { samples[$0] })
                    events.append(.refereed(blocks: assignment.microBatches.map(\.block), report))
                case .workerJoined, .sharesChanged, .workerRefused, .trainingStarted, .ignored:
                    break
                }
            }
        }
    }

    private func feedWorker(_ index: Int, _ event: WorkerEvent) {
        for action in workers[index].handle(event) {
            workerLogs[index].append((now, action))
            switch action {
            case .send(let message):
                transmit(message, from: .worker(index, connection: connection[index]), to: .coordinator)
            case .reconnect:
                connection[index] += 1
            case .coordinatorLost:
                generation[index] += 1
                held[index] = [:]
            case .shardReceived(let shard):
                for local in 0..<shard.sampleCount {
                    let pixels = shard.pixelsPerImage
                    held[index][shard.firstKey + local] = (
                        shard.images[(local * pixels)..<((local + 1) * pixels)], shard.labels[local]
                    )
                }
            case .computeGradient(let assignment):
                let delay = Int.random(in: options.computeTicks, using: &random)
                computations.append(
                    Computation(
                        dueTick: now + delay, worker: index, generation: generation[index], assignment: assignment))
            case .welcomed, .ignored, .finished, .failed:
                break
            }
        }
    }
}
