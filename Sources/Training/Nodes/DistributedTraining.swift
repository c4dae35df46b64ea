// The CNN on both sides of the wire: the coordinator's model host (network, optimizer, per-epoch test
// evaluation) and the worker's gradient computer, plus the run that turns coordinator-node events into
// the same `TrainingEvent`s the single-process trainer reports. The networking itself lives in
// CoordinatorNode and WorkerNode, which know nothing of ConvNet.
import ConvNet
import DataParallel
import Foundation
import Logging
import MNIST

/// What the coordinator sends every worker (the `settings` bytes of the shard message), as JSON: enough to
/// build the same network and compute the same gradients. Documented in PROTOCOL.md.
public struct WorkerSettings: Codable, Equatable, Sendable {
    /// The run's configuration (seed, augmentation, model preset...).
    public var configuration: TrainingConfiguration
    /// The network's architecture as JSON (ConvNet's `Architecture`), so workers never depend on presets.
    public var architecture: String
    /// Micro-batch positions of the run (`BatchPlan.blockCount`): the leaves of the reduction tree.
    public var blockCount: Int
    /// The coordinator's liveness window in seconds (`--liveness`): workers wait at least this long
    /// for a silent coordinator too. Absent: the worker's own window.
    public var livenessSeconds: Double?

    public init(
        configuration: TrainingConfiguration, architecture: String, blockCount: Int, livenessSeconds: Double? = nil
    ) {
        self.configuration = configuration
        self.architecture = architecture
        self.blockCount = blockCount
        self.livenessSeconds = livenessSeconds
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { [UInt8]($0) } ?? []
    }

    public static func decoded(_ bytes: [UInt8]) throws -> WorkerSettings {
        do {
            return try JSONDecoder().decode(WorkerSettings.self, from: Data(bytes))
        } catch {
            throw TrainingConfiguration.ValidationError(
                flag: "settings", message: "the coordinator's settings are not valid JSON WorkerSettings (\(error))")
        }
    }
}

/// The coordinator's model: the run's `TrainingStep` (weights, optimizer, moving average), and the
/// test set it evaluates after each epoch.
public struct NetworkHost: ModelHost {
    public let step: TrainingStep
    private let testSet: LabeledImages
    /// Sent to the workers in the settings (`WorkerSettings.livenessSeconds`).
    private let livenessSeconds: Double?
    private let evaluations = EvaluationRecord()

    /// Training images that calibrate batch normalisation (`TrainingStep.calibrationImages`); empty without it.
    public let calibration: [Float]

    /// The host of a run over `trainCount` training images; `training`, when given, is that set
    /// (whose first keys calibrate batch normalisation, which needs it).
    public init(
        configuration: TrainingConfiguration, testSet: LabeledImages, trainCount: Int, training: LabeledImages? = nil,
        livenessSeconds: Double? = nil
    ) throws {
        let step = try TrainingStep(configuration: configuration, sampleCount: trainCount)
        self.step = step
        self.testSet = testSet
        self.livenessSeconds = livenessSeconds
        calibration = training.map { step.calibrationImages($0) } ?? []
    }

    /// The model as it stands (`TrainingStep.inferenceModel`).
    public func inferenceModel() throws -> Network { try step.inferenceModel(calibration: calibration) }

    public var network: Network { step.network }
    public var configuration: TrainingConfiguration { step.configuration }
    public var parameters: [Float] { step.network.parameters }

    public mutating func apply(_ result: StepResult) -> Double { Double(step.apply(result)) }

    public func settings() -> [UInt8] {
        WorkerSettings(
            configuration: configuration, architecture: network.architecture.jsonString(),
            blockCount: step.plan.blockCount, livenessSeconds: livenessSeconds
        )
        .encoded()
    }

    /// An audit's referee: the request computed here by the code the workers run, so its bits are what
    /// an honest worker of the same build and kind of CPU sends.
    public func referee(_ assignment: StepAssignment, shards: [Shard]) -> GradientReport? {
        guard let first = shards.first, let computer = try? NetworkGradientComputer(settings: settings(), shard: first)
        else { return nil }
        for shard in shards.dropFirst() { computer.add(shard) }
        var report = computer.gradient(for: assignment)
        report.step = assignment.step
        return report
    }

    /// The weights to evaluate and save (the moving average, if one is kept).
    public var modelParameters: [Float] { step.modelParameters }

    /// The evaluation of the most recent epoch (set by the evaluation work, off the node's thread).
    public var lastEvaluation: Evaluation? { evaluations.last }

    public func evaluation(ofEpoch epoch: Int) -> (@Sendable () -> EpochEvaluation?)? {
        let architecture = network.architecture, parameters = modelParameters, testSet = testSet
        let evaluations = self.evaluations, calibration = self.calibration
        return {
            let start = DispatchTime.now().uptimeNanoseconds
            guard
                let network = try? TrainingStep.inferenceModel(
                    architecture: architecture, parameters: parameters, calibration: calibration)
            else { return nil }
            let evaluation = Evaluation(network: network, images: testSet)
            evaluations.record(evaluation)
            return EpochEvaluation(
                accuracy: evaluation.accuracy, meanLoss: evaluation.meanLoss,
                seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, details: evaluation,
                startedAt: Double(start) / 1e9)
        }
    }
}

/// The latest evaluation, written by the evaluation queue and read by the run's thread.
// @unchecked Sendable: `stored` is read and written under `lock`.
public final class EvaluationRecord: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Evaluation?

    func record(_ evaluation: Evaluation) {
        lock.lock()
        stored = evaluation
        lock.unlock()
    }

    public var last: Evaluation? {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// The worker's half: its micro-batches of each global batch, at the step's weights.
public final class NetworkGradientComputer: GradientComputer {
    private let computer: MicroBatchComputer
    public let coordinatorLivenessSeconds: Double?

    /// Builds the network the coordinator describes; throws a clear error for settings it cannot use.
    public init(settings bytes: [UInt8], shard: Shard) throws {
        let settings = try WorkerSettings.decoded(bytes)
        let architecture = try Architecture(jsonString: settings.architecture)
        let network = try Network(architecture: architecture, seed: 0)
        let side = Int(Double(shard.pixelsPerImage).squareRoot())
        guard side * side == shard.pixelsPerImage, shard.pixelsPerImage == network.inputCount else {
            throw TrainingConfiguration.ValidationError(
                flag: "shard", message: "images of \(shard.pixelsPerImage) pixels do not fit the network's input")
        }
        guard settings.blockCount >= 1 else {
            throw TrainingConfiguration.ValidationError(
                flag: "settings", message: "blockCount must be at least 1, got \(settings.blockCount)")
        }
        computer = MicroBatchComputer(
            network: network,
            samples: LabeledImages(rows: side, columns: side, pixels: shard.images, labels: shard.labels),
            firstKey: shard.firstKey, seed: settings.configuration.seed,
            augmentation: settings.configuration.augmentation,
            tree: GradientTree(blockCount: settings.blockCount))
        coordinatorLivenessSeconds = settings.livenessSeconds
    }

    public func gradient(for assignment: StepAssignment) -> GradientReport { computer.report(for: assignment) }

    public func add(_ shard: Shard) {
        let side = computer.samples.rows
        computer.add(
            LabeledImages(rows: side, columns: side, pixels: shard.images, labels: shard.labels),
            firstKey: shard.firstKey)
    }
}

/// How a distributed run ended, with the model as it stands (complete, or the steps done so far).
public struct DistributedTrainingResult {
    public let network: Network
    public let outcome: NodeOutcome
    public let completedSteps: Int
    public let epochs: [EpochSummary]
    /// The test evaluation of the final weights.
    public let testEvaluation: Evaluation
    /// Mean seconds per step from sending the weights to holding every gradient (the workers' compute,
    /// the network both ways, and waiting for the slowest worker), and applying the optimizer.
    public let meanGatherSeconds: Double
    public let meanApplySeconds: Double
    /// Where the state of an unfinished run was written (nil: finished, or no checkpoint kept), or why
    /// it could not be.
    public let checkpoint: Result<URL, Error>?
    /// Protocol bytes per step, both directions, all workers: each worker gets a step message (header,
    /// weights, its sample keys, a (block, count) pair per micro-batch) and answers with a gradient
    /// message (header, one record and one gradient per tree node its blocks cover).
    public let bytesPerStep: Int
}

/// One coordinator run: binds, waits for the workers, trains, evaluates after every epoch.
// @unchecked Sendable: the node and the relay are used by the thread in `run()`; the one call from
// other threads, `requestStop`, goes to the node's locked `StopRequest`.
public final class DistributedTraining: @unchecked Sendable {
    public let configuration: TrainingConfiguration
    private let data: MNISTData
    private let stepsPerEpoch: Int
    private let totalSteps: Int
    private let relay = EventRelay()
    private let node: CoordinatorNode<NetworkHost>
    private let checkpoints: CheckpointPolicy?
    /// The training data's fingerprint, for checkpoints (computed once; empty without checkpoints).
    private let dataFingerprint: String
    private let logger: Logger

    /// The blocks the training set is cut into (a worker's share is a run of them).
    public var blockCount: Int { node.model.step.plan.blockCount }

    /// - Parameters:
    ///   - endpoint: where to bind, e.g. `tcp://*:5555` or `tcp://127.0.0.1:*`.
    ///   - cluster: the workers to wait for and how they are watched.
    ///   - checkpoints: where and how often to keep the run's state, and the state to continue from
    ///     (checked by the caller, `Checkpoint.mismatch`). Nil: none.
    ///   - onNodeEvent: every coordinator-node event (joins, deaths, the bound endpoint...), on the run thread.
    public init(
        configuration: TrainingConfiguration, data: MNISTData, endpoint: String, cluster: ClusterSettings,
        checkpoints: CheckpointPolicy? = nil, trace: TraceRecorder? = nil, logger: Logger,
        onNodeEvent: @escaping (CoordinatorNodeEvent) -> Void
    ) throws {
        try configuration.validate()
        let workerCount = cluster.workerCount
        guard workerCount >= 1, data.train.count > 0 else {
            throw TrainingConfiguration.ValidationError(flag: "--workers", message: "must be at least 1")
        }
        guard (1...workerCount).contains(cluster.minimumWorkers) else {
            throw TrainingConfiguration.ValidationError(
                flag: "--min-workers", message: "must be 1...\(workerCount) (--workers), got \(cluster.minimumWorkers)")
        }
        self.configuration = configuration
        self.data = data
        self.checkpoints = checkpoints
        self.logger = logger
        ComputeThreads.configure(threads: configuration.threads)
        let host = try NetworkHost(
            configuration: configuration, testSet: data.test, trainCount: data.train.count, training: data.train,
            livenessSeconds: cluster.livenessSeconds)
        if let resume = checkpoints?.resume { host.step.restore(resume) }
        stepsPerEpoch = host.step.plan.stepsPerEpoch
        totalSteps = host.step.totalSteps
        guard workerCount <= host.step.plan.blockCount else {
            throw TrainingConfiguration.ValidationError(
                flag: "--workers",
                message: "at most \(host.step.plan.blockCount) workers for batches of \(configuration.batchSize) "
                    + "(micro-batches of \(BatchPlan.defaultMicroBatchSize) samples), got \(workerCount)")
        }
        var nodeConfiguration = CoordinatorNodeConfiguration(
            endpoint: endpoint, workerCount: workerCount, batchSize: configuration.batchSize, totalSteps: totalSteps,
            seed: configuration.seed)
        nodeConfiguration.joinTimeoutSeconds = cluster.joinTimeoutSeconds
        nodeConfiguration.security = cluster.security
        nodeConfiguration.stateMachine.auditFraction = cluster.auditFraction
        nodeConfiguration.stateMachine.auditSeed = UInt64.random(in: 0...UInt64.max)  // Secret from the workers.
        let tick = Double(nodeConfiguration.tickMilliseconds) / 1000
        nodeConfiguration.stateMachine.firstStep = host.step.stepsDone
        nodeConfiguration.stateMachine.livenessTicks = max(5, Int(cluster.livenessSeconds / tick))
        nodeConfiguration.stateMachine.minimumWorkers = cluster.minimumWorkers
        nodeConfiguration.stateMachine.stepTimeoutTicks = cluster.stepTimeoutSeconds.map { max(1, Int($0 / tick)) }
        relay.forward = { event in
            trace?.record(event)
            onNodeEvent(event)
        }
        let relay = self.relay
        node = CoordinatorNode(
            configuration: nodeConfiguration, model: host, trainingSet: data.train, logger: logger,
            onEvent: { relay.handle($0) })
        let fingerprint = checkpoints.map { $0.dataFingerprint ?? Checkpoint.fingerprint(of: data.train) }
        dataFingerprint = fingerprint ?? ""
        if let checkpoints, let fingerprint {
            let step = host.step, every = checkpoints.everySteps ?? stepsPerEpoch, total = totalSteps
            relay.afterStep = { [weak relay] in
                guard step.stepsDone % every == 0, step.stepsDone < total else { return }
                do {
                    let start = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
                    try step.checkpoint(dataFingerprint: fingerprint).write(
                        to: checkpoints.url, model: try host.inferenceModel())
                    trace?.recordCheckpoint(
                        step: step.stepsDone, start: start, end: Double(DispatchTime.now().uptimeNanoseconds) / 1e9)
                    logger.debug("checkpoint after step \(step.stepsDone) written to \(checkpoints.url.path)")
                    relay?.checkpointed(step.stepsDone, checkpoints.url.path)
                } catch {
                    logger.warning(
                        "could not write the checkpoint after step \(step.stepsDone): \(error); the previous one is kept"
                    )
                }
            }
        }
    }

    /// Trains; reports `TrainingEvent`s like the single-process trainer. Never throws for a failed run:
    /// the result says how it ended and holds the model as it stands.
    public func run(onEvent: @escaping (TrainingEvent) -> Void) -> DistributedTrainingResult {
        var progress = ProgressTracker(
            configuration: configuration, trainCount: data.train.count, testCount: data.test.count,
            parameterCount: node.model.network.parameterCount, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        let model = node.model
        relay.translate = { event in
            progress.translate(event).forEach(onEvent)
            if case .stepCompleted = event {
                onEvent(
                    .modelUpdated(
                        ModelSnapshot(
                            step: model.step.stepsDone, architecture: model.network.architecture,
                            parameters: model.modelParameters, calibration: model.calibration)))
            }
        }
        relay.checkpointed = { onEvent(.checkpointWritten(step: $0, path: $1)) }
        let result = node.run()
        let host = node.model
        var written: Result<URL, Error>?
        if !result.outcome.isFinished, let checkpoints {
            written = Result {
                try state().write(to: checkpoints.url, model: try host.inferenceModel())
                return checkpoints.url
            }
        }
        // The model in a network of its own, so the run's state (which a checkpoint reads) stays as it is.
        let network = (try? host.inferenceModel()) ?? host.network
        let evaluation =
            result.outcome.isFinished
            ? host.lastEvaluation ?? Evaluation(network: network, images: data.test)
            : Evaluation(network: network, images: data.test)  // The model as it stands.
        let steps = Double(max(1, progress.stepCount))
        return DistributedTrainingResult(
            network: network, outcome: result.outcome, completedSteps: host.step.stepsDone,
            epochs: progress.summaries, testEvaluation: evaluation,
            meanGatherSeconds: progress.gatherSeconds / steps, meanApplySeconds: progress.applySeconds / steps,
            checkpoint: written,
            bytesPerStep: bytesPerStep(plan: host.step.plan, workerCount: node.configuration.stateMachine.workerCount))
    }

    /// The bytes of one full step's messages (see `DistributedTrainingResult.bytesPerStep`).
    private func bytesPerStep(plan: BatchPlan, workerCount: Int) -> Int {
        let tree = GradientTree(blockCount: plan.blockCount)
        let weights = 4 * node.model.network.parameterCount
        return (0..<workerCount).reduce(0) { total, worker in
            let blocks = plan.shardBlocks(worker: worker, of: workerCount)
            let samples = blocks.reduce(0) { $0 + plan.microBatchSize(block: $1) }
            let pieces = tree.nodes(covering: blocks).count
            let step = ProtocolInfo.headerByteCount + weights + 4 * samples + 8 * blocks.count
            let gradient = ProtocolInfo.headerByteCount + pieces * (Message.pieceRecordByteCount + weights)
            return total + step + gradient
        }
    }

    /// Asks the run to stop (thread-safe): `run` returns what it has. With `releaseWorkers` the workers
    /// are told to shut down; without, they wait for a coordinator that continues the run.
    public func requestStop(reason: String, releaseWorkers: Bool = true) {
        node.requestStop(reason: reason, releaseWorkers: releaseWorkers)
    }

    /// The state of the run as it stands, for a checkpoint (read it only when `run` is not running).
    public func state() -> Checkpoint { node.model.step.checkpoint(dataFingerprint: dataFingerprint) }
}

/// Passes node events to the caller and to the progress translation (set once `run` starts).
// @unchecked Sendable: both closures are set before `run()` starts, then called on its thread only.
private final class EventRelay: @unchecked Sendable {
    var forward: (CoordinatorNodeEvent) -> Void = { _ in }
    var translate: (CoordinatorNodeEvent) -> Void = { _ in }
    /// After each applied step (a checkpoint may be due).
    var afterStep: () -> Void = {}
    /// After a periodic checkpoint was written: its step and path.
    var checkpointed: (Int, String) -> Void = { _, _ in }

    func handle(_ event: CoordinatorNodeEvent) {
        forward(event)
        translate(event)
        if case .stepCompleted = event { afterStep() }
    }
}

/// The coordinator's cluster settings: how many workers, and how they are watched.
public struct ClusterSettings: Sendable {
    /// Workers to wait for before the first step (and slots; more wait as spares).
    public var workerCount: Int
    /// Training goes on down to this many workers.
    public var minimumWorkers = 1
    public var joinTimeoutSeconds = 120.0
    /// A worker silent this long is declared dead; workers also wait this long for a silent coordinator.
    public var livenessSeconds = 10.0
    /// A worker that does not answer a step this long is evicted (nil: derived from the step times).
    public var stepTimeoutSeconds: Double?
    /// CURVE keys of the coordinator and the workers it lets in (nil: plaintext, anyone may join).
    public var security: CoordinatorSecurity?
    /// The fraction of answers audited (`CoordinatorConfiguration.auditFraction`).
    public var auditFraction = 0.0

    public init(workerCount: Int) { self.workerCount = workerCount }
}

/// Turns coordinator-node events into the `TrainingEvent`s of a run: per-step progress and per-epoch
/// summaries with training time (test evaluation excluded), measured here between node events.
struct ProgressTracker {
    let trainCount: Int, testCount: Int, parameterCount: Int
    private(set) var stepCount = 0
    private(set) var gatherSeconds = 0.0, applySeconds = 0.0
    private var progress: TrainingProgress
    private var epochSeconds = 0.0
    private var lastMark = Date()

    init(
        configuration: TrainingConfiguration, trainCount: Int, testCount: Int, parameterCount: Int, stepsPerEpoch: Int,
        totalSteps: Int
    ) {
        self.trainCount = trainCount
        self.testCount = testCount
        self.parameterCount = parameterCount
        progress = TrainingProgress(configuration: configuration, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }

    /// One summary per finished epoch, in order.
    var summaries: [EpochSummary] { progress.summaries }

    mutating func translate(_ event: CoordinatorNodeEvent) -> [TrainingEvent] {
        switch event {
        case .trainingStarted:
            lastMark = Date()
            return [progress.started(parameterCount: parameterCount, trainCount: trainCount, testCount: testCount)]
        case .stepCompleted(let metrics):
            stepCount += 1
            gatherSeconds += metrics.gatherSeconds
            applySeconds += metrics.applySeconds
            let now = Date()
            epochSeconds += now.timeIntervalSince(lastMark)
            lastMark = now
            let statistics = BatchStatistics(
                lossSum: metrics.lossSum, correct: metrics.correctCount, count: metrics.sampleCount)
            let events: [TrainingEvent] = [
                .batchCompleted(
                    progress.record(
                        step: metrics.step, epoch: metrics.epoch, statistics: statistics,
                        learningRate: metrics.learningRate, epochSeconds: epochSeconds))
            ]
            if (metrics.step + 1) % progress.stepsPerEpoch == 0 || metrics.step + 1 == progress.totalSteps {
                // The epoch's training ends here; its evaluation runs off the node's thread and comes later.
                progress.endTraining(ofEpoch: metrics.epoch, seconds: epochSeconds)
                epochSeconds = 0
            }
            return events
        case .epochCompleted(let epoch, let evaluation):
            let summary = progress.finishEpoch(
                epoch, testAccuracy: evaluation?.accuracy ?? 0, evaluationSeconds: evaluation?.seconds ?? 0)
            return (evaluation?.details.map { [.evaluated(epoch: epoch + 1, $0)] } ?? []) + [.epochCompleted(summary)]
        default:
            return []
        }
    }
}
