// An in-memory cluster for protocol tests: one Coordinator and N Worker state machines joined by a
// simulated network that encodes and decodes every message, and can drop, duplicate, delay and reorder
// messages and kill workers, all driven by one seed. Time is ticks; nothing here sleeps or opens a socket.
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
    public var workerDeathPolicy = WorkerDeathPolicy.stop
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

/// One coordinator and `workerCount` workers on a simulated network.
public final class SimulatedCluster {
    public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
        case coordinator
        case worker(Int)

        public var description: String {
            switch self {
            case .coordinator: "coordinator"
            case .worker(let index): "worker-\(index)"
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
        /// The peers that had joined and had not been declared dead when the step completed.
        public var liveWorkers: Set<PeerID>
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
        var assignment: StepAssignment
    }

    public let seed: UInt64
    public let options: ClusterOptions
    public let data: TrainingSamples
    public let initialWeights: [Float]
    public private(set) var coordinator: Coordinator
    public private(set) var workers: [Worker]
    public private(set) var isAlive: [Bool]
    public private(set) var now = 0
    public private(set) var outcome = Outcome.running

    // Records for the invariants.
    public private(set) var completedSteps: [CompletedStep] = []
    public private(set) var coordinatorLog: [(tick: Int, action: CoordinatorAction)] = []
    public private(set) var workerLogs: [[(tick: Int, action: WorkerAction)]]
    /// (tick, worker index) of every `workerDied` action.
    public private(set) var deaths: [(tick: Int, peer: PeerID, step: Int, reason: String)] = []
    public private(set) var decodeFailures: [String] = []
    public private(set) var messagesSent = 0
    public private(set) var messagesDropped = 0

    private var random: ClusterRandom
    private var network: [Packet] = []
    private var sequence = 0
    private var lastDelivery: [Endpoint: [Endpoint: Int]] = [:]
    private var shards: [Shard?]
    private var computations: [Computation] = []
    private var weights: [Float]
    private var joined: Set<PeerID> = []
    /// The slot the coordinator gave each peer that ever joined.
    public private(set) var workerIndexByPeer: [PeerID: Int] = [:]
    private var declaredDead: Set<PeerID> = []

    public static func peer(ofWorker index: Int) -> PeerID { PeerID("worker-\(index)") }

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

        var configuration = CoordinatorConfiguration(
            workerCount: options.workerCount, batchSize: options.batchSize,
            totalSteps: options.totalSteps, seed: seed, settings: [1, 2, 3])
        configuration.microBatchSize = options.microBatchSize
        configuration.joinTimeoutTicks = options.joinTimeoutTicks
        configuration.livenessTicks = options.livenessTicks
        configuration.heartbeatIntervalTicks = options.heartbeatIntervalTicks
        configuration.resendTicks = options.resendTicks
        configuration.workerDeathPolicy = options.workerDeathPolicy
        configuration.protocolVersion = options.coordinatorProtocolVersion
        coordinator = Coordinator(configuration: configuration, data: data)

        workers = (0..<options.workerCount).map { index in
            var configuration = WorkerConfiguration(name: "sim-\(index)", threads: 1)
            configuration.livenessTicks = options.livenessTicks
            configuration.heartbeatIntervalTicks = options.heartbeatIntervalTicks
            configuration.initialBackoffTicks = 3
            configuration.maximumBackoffTicks = 24
            configuration.protocolVersion = options.workerProtocolVersions[index] ?? ProtocolInfo.version
            configuration.incarnation = UInt64(index) << 32
            return Worker(configuration: configuration)
        }
        isAlive = Array(repeating: true, count: options.workerCount)
        shards = Array(repeating: nil, count: options.workerCount)
        workerLogs = Array(repeating: [], count: options.workerCount)
    }

    /// A description of the run for failure messages: the seed first, so the run can be replayed.
    public var summary: String {
        "seed \(seed): tick \(now), outcome \(outcome), \(completedSteps.count) steps, "
            + "\(messagesSent) messages sent, \(messagesDropped) dropped, deaths \(deaths.map { "\($0.peer)@\($0.tick)" })"
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

    /// One tick: deliver due messages, finish due computations, then tick every node and apply kills.
    public func advance() {
        now += 1
        for (index, tick) in options.kills where tick == now { kill(worker: index) }
        deliverDueMessages()
        let due = computations.filter { $0.dueTick <= now }
        computations.removeAll { $0.dueTick <= now }
        for computation in due where isAlive[computation.worker] {
            let report = syntheticReport(worker: computation.worker, assignment: computation.assignment)
            feedWorker(computation.worker, .gradientComputed(report))
        }
        feedCoordinator(.tick)
        for index in workers.indices where isAlive[index] { feedWorker(index, .tick) }
    }

    /// Makes worker `index` fall silent: it processes and sends nothing from now on.
    public func kill(worker index: Int) {
        isAlive[index] = false
        computations.removeAll { $0.worker == index }
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
        guard let shard = shards[worker] else { return GradientReport(step: assignment.step, pieces: []) }
        return Self.syntheticReport(shard: shard, assignment: assignment, tree: coordinator.tree)
    }

    /// Step `step` as one node holding every block computes it: the reference for bit-identity.
    public func singleNodeResult(step: Int, weights: [Float]) -> StepResult {
        let plan = coordinator.plan
        let layout = plan.layoutOrder
        let everything = Shard(
            pixelsPerImage: data.pixelsPerImage,
            images: layout.flatMap { data.images[($0 * data.pixelsPerImage)..<(($0 + 1) * data.pixelsPerImage)] },
            labels: layout.map { data.labels[$0] }, settings: [])
        let assignment = plan.assignment(
            step: step, blocks: 0..<plan.blockCount, microBatches: plan.microBatches(step: step).map { $0[...] },
            weights: weights)
        return StepResult(
            step: step, epoch: plan.epoch(ofStep: step),
            reports: [Self.syntheticReport(shard: everything, assignment: assignment, tree: coordinator.tree)],
            tree: coordinator.tree, parameterCount: weights.count)
    }

    /// A worker's report of the synthetic model: each micro-batch's per-sample gradients summed (in
    /// Double, then rounded to Float), the micro-batches added along `tree`.
    public static func syntheticReport(shard: Shard, assignment: StepAssignment, tree: GradientTree) -> GradientReport {
        let leaves = assignment.microBatchIndices.map { microBatch, indices in
            var sum = [Double](repeating: 0, count: assignment.weights.count)
            var lossSum = 0.0
            var correct = 0
            for local in indices.map(Int.init) {
                let pixels = shard.images[(local * shard.pixelsPerImage)..<((local + 1) * shard.pixelsPerImage)]
                let gradient = sampleGradient(pixels: pixels, label: shard.labels[local], weights: assignment.weights)
                for index in sum.indices { sum[index] += gradient[index] }
                let (loss, isCorrect) = sampleLoss(label: shard.labels[local])
                lossSum += loss
                if isCorrect { correct += 1 }
            }
            return GradientPiece(
                blocks: microBatch.block..<(microBatch.block + 1), sampleCount: indices.count, correctCount: correct,
                lossSum: lossSum, gradient: sum.map { Float($0) })
        }
        return GradientReport(
            step: assignment.step, pieces: assignment.pieces(fromLeaves: leaves, tree: tree))
    }

    /// The naive mean gradient of step `step`'s global batch over the whole data set, counting only the
    /// samples of the blocks held by `contributors` (all samples when every worker contributed).
    public func naiveMeanGradient(step: Int, weights: [Float], contributors: [PeerID]) -> (
        gradient: [Double], samples: Int, lossSum: Double
    ) {
        let blocks = contributors.compactMap { workerIndexByPeer[$0] }.flatMap {
            Array(coordinator.plan.shardBlocks(worker: $0, of: options.workerCount))
        }
        return Self.naiveMeanGradient(plan: coordinator.plan, data: data, step: step, weights: weights, blocks: blocks)
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
        workers.indices.first { Self.peer(ofWorker: $0) == peer }.map(Endpoint.worker)
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
                guard case .worker(let index) = packet.from else { continue }
                feedCoordinator(.received(message, from: Self.peer(ofWorker: index)))
            case .worker(let index):
                guard isAlive[index] else { continue }
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
                case .workerJoined(let info, _, _):
                    joined.insert(info.peer)
                    workerIndexByPeer[info.peer] = info.index
                    declaredDead.remove(info.peer)
                case .workerDied(let info, let step, let reason):
                    declaredDead.insert(info.peer)
                    deaths.append((now, info.peer, step, reason))
                case .stepCompleted(let result):
                    completedSteps.append(
                        CompletedStep(
                            result: result, weights: weights,
                            liveWorkers: joined.subtracting(declaredDead), tick: now))
                    weights = zip(weights, result.averagedGradient).map { $0 - options.learningRate * $1 }
                    events.append(.weightsUpdated(weights))
                case .finished:
                    outcome = .finished
                case .failed(let reason):
                    outcome = .failed(reason)
                case .workerRefused, .trainingStarted, .ignored:
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
                transmit(message, from: .worker(index), to: .coordinator)
            case .shardReceived(let shard):
                shards[index] = shard
            case .computeGradient(let assignment):
                let delay = Int.random(in: options.computeTicks, using: &random)
                computations.append(Computation(dueTick: now + delay, worker: index, assignment: assignment))
            case .welcomed, .reconnect, .coordinatorLost, .ignored, .finished, .failed:
                break
            }
        }
    }
}
