// What the coordinator and worker nodes report while they run, and how a run ends: plain values that
// the CLI renders (log lines, progress bar, JSON lines). Also the two model-facing protocols the nodes
// are generic over, so that this module's networking never depends on ConvNet types.
// Nothing here touches a socket or a clock.
import DataParallel

// MARK: Model-facing protocols

/// The coordinator's model: the parameter slab, the optimizer, the settings workers need, evaluation.
///
/// The coordinator node owns its host for the duration of `run()` and calls it only from the thread
/// that runs the node; the final host is available as `CoordinatorNode.model` after `run()` returns.
public protocol ModelHost {
    /// The current parameters, one flat slab: `[parameterCount]`. Sent to every worker each step.
    var parameters: [Float] { get }

    /// Applies one optimizer step (with its learning-rate schedule) to `parameters`, using the step's
    /// mean gradient `result.averagedGradient` (the same slab layout as `parameters`); returns the
    /// learning rate used.
    mutating func apply(_ result: StepResult) -> Double

    /// Opaque bytes sent to every worker with its shard, from which it builds the same model
    /// (architecture, seed, loss...). The protocol never looks inside.
    func settings() -> [UInt8]

    /// Called once at the end of each epoch, after that epoch's last `apply`, on the node's thread:
    /// the epoch's test evaluation as work to run off that thread (holding its own copy of the weights),
    /// or nil for none. The node runs the work on its evaluation queue, one at a time and in order,
    /// while training goes on and heartbeats flow, and reports each result in
    /// `CoordinatorNodeEvent.epochCompleted`.
    mutating func evaluation(ofEpoch epoch: Int) -> (@Sendable () -> EpochEvaluation?)?

    /// Computes a step request as a worker would, over `shards` (the samples of its blocks), at the
    /// request's weights: the referee of an audit where two workers disagree. Nil if it cannot.
    func referee(_ assignment: StepAssignment, shards: [Shard]) -> GradientReport?
}

/// The figures of an end-of-epoch evaluation on the test set.
public struct EpochEvaluation: Sendable, Equatable {
    /// Fraction classified correctly, in [0, 1].
    public var accuracy: Double
    /// Mean cross-entropy loss.
    public var meanLoss: Double
    /// Seconds the evaluation took.
    public var seconds: Double
    /// The whole evaluation (confusion matrix, mistakes), when the host made one.
    public var details: Evaluation?
    /// When it started, in seconds on the monotonic clock of `StepTiming` (nil: not known).
    public var startedAt: Double?

    public init(
        accuracy: Double, meanLoss: Double, seconds: Double = 0, details: Evaluation? = nil, startedAt: Double? = nil
    ) {
        self.accuracy = accuracy
        self.meanLoss = meanLoss
        self.seconds = seconds
        self.details = details
        self.startedAt = startedAt
    }
}

extension ModelHost {
    public mutating func evaluation(ofEpoch epoch: Int) -> (@Sendable () -> EpochEvaluation?)? { nil }
    public func referee(_ assignment: StepAssignment, shards: [Shard]) -> GradientReport? { nil }
}

/// The worker's model: computes summed gradients on the samples of the shards it holds.
///
/// A worker node builds one with its `GradientComputerFactory` when the shard arrives and then calls
/// it from a single compute thread (never the polling thread, never two threads at once).
public protocol GradientComputer {
    /// The gradient of the assignment's samples at the assignment's weights.
    ///
    /// Returns, for `assignment.step`: the SUM (not the mean) over the samples with keys
    /// `assignment.sampleKeys` of the per-sample gradients (`[parameterCount]`, laid out like
    /// `assignment.weights`), the sum of their losses, how many were classified correctly, and
    /// `sampleCount == assignment.sampleKeys.count`. An empty assignment gives zeros.
    mutating func gradient(for assignment: StepAssignment) -> GradientReport

    /// Keeps the samples of a further shard (blocks that moved to this worker) beside those held;
    /// its keys never overlap theirs and its images have the same size (the state machine checks).
    mutating func add(_ shard: Shard)

    /// How long the coordinator may fall silent before the worker counts it as lost, from its
    /// settings (nil: the worker's own window).
    var coordinatorLivenessSeconds: Double? { get }
}

extension GradientComputer {
    public var coordinatorLivenessSeconds: Double? { nil }
}

/// Builds a worker's `GradientComputer` from the coordinator's settings bytes and its first shard.
///
/// Throwing (unknown settings, model mismatch) makes the worker send `goodbye` with the error's
/// description and end its run with `.failed`, which the CLI turns into a non-zero exit.
public typealias GradientComputerFactory = (_ settings: [UInt8], _ shard: Shard) throws -> any GradientComputer

// MARK: Outcomes

/// How a node's run ended.
public enum NodeOutcome: Equatable, Sendable, CustomStringConvertible {
    /// The run completed (coordinator: every step done; worker: the coordinator said shutdown).
    case finished(reason: String)
    /// The run stopped early; `reason` says who, where and why. Save what there is, exit non-zero.
    case failed(reason: String)

    public var isFinished: Bool {
        if case .finished = self { return true }
        return false
    }

    public var reason: String {
        switch self {
        case .finished(let reason), .failed(let reason): reason
        }
    }

    public var description: String {
        switch self {
        case .finished(let reason): "finished: \(reason)"
        case .failed(let reason): "failed: \(reason)"
        }
    }
}

/// What `CoordinatorNode.run()` returns. In both outcomes the model holds the last applied step,
/// so the caller saves it either way.
public struct CoordinatorNodeResult: Sendable {
    public var outcome: NodeOutcome
    /// Steps whose gradient was applied to the model.
    public var completedSteps: Int
    /// The endpoint the ROUTER was bound to (nil if binding failed).
    public var endpoint: String?
}

// MARK: Coordinator events

/// The metrics of one completed synchronous step, as far as the coordinator can see.
public struct StepMetrics: Sendable, Equatable {
    public var step: Int
    public var epoch: Int
    /// Samples that contributed to the averaged gradient.
    public var sampleCount: Int
    /// Sum of the per-sample losses over the global batch, at the step's weights.
    public var lossSum: Double
    /// Samples classified correctly at the step's weights.
    public var correctCount: Int
    /// The learning rate the optimizer used.
    public var learningRate: Double
    /// Seconds from broadcasting the step to receiving its last gradient: worker compute plus
    /// communication (the coordinator cannot split the two).
    public var gatherSeconds: Double
    /// Seconds spent in `ModelHost.apply` (the optimizer).
    public var applySeconds: Double
    /// Per worker, seconds from broadcasting the step to its gradient: its compute plus both transfers.
    /// `gatherSeconds` minus this is how long the others kept it waiting.
    public var answerSeconds: [PeerID: Double] = [:]
    /// The step's exchanges on the coordinator's monotonic clock, for a timeline (`TraceRecorder`).
    public var timing: StepTiming?
    /// Bytes the coordinator has sent and received in this run so far (message frames, every kind).
    public var bytesSent: Int
    public var bytesReceived: Int

    public init(
        step: Int, epoch: Int, sampleCount: Int, lossSum: Double, correctCount: Int, learningRate: Double,
        gatherSeconds: Double, applySeconds: Double, answerSeconds: [PeerID: Double] = [:], timing: StepTiming? = nil,
        bytesSent: Int = 0, bytesReceived: Int = 0
    ) {
        self.timing = timing
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.step = step
        self.epoch = epoch
        self.sampleCount = sampleCount
        self.lossSum = lossSum
        self.correctCount = correctCount
        self.learningRate = learningRate
        self.gatherSeconds = gatherSeconds
        self.applySeconds = applySeconds
        self.answerSeconds = answerSeconds
    }

    /// Mean loss per sample (0 for an empty batch).
    public var meanLoss: Double { sampleCount > 0 ? lossSum / Double(sampleCount) : 0 }
    /// Fraction of the batch classified correctly (0 for an empty batch).
    public var accuracy: Double { sampleCount > 0 ? Double(correctCount) / Double(sampleCount) : 0 }
}

/// One step's exchanges as the coordinator timed them, in seconds on its monotonic clock
/// (`DispatchTime` uptime), with each worker's own `WorkerTiming` from its gradient.
public struct StepTiming: Sendable, Equatable {
    /// The first and the last `step` message of this step handed to the socket.
    public var broadcastStarted = 0.0
    public var broadcastEnded = 0.0
    /// The last worker's gradient arrived.
    public var lastArrival = 0.0
    /// The step was complete (the tree finished), and its update applied.
    public var gathered = 0.0
    public var applied = 0.0
    public var workers: [PeerID: Exchange] = [:]

    /// One worker's part: when its step was sent, when its (first) gradient arrived, and what it reported.
    public struct Exchange: Sendable, Equatable {
        public var stepSent: Double?
        public var arrived: Double?
        public var reported: WorkerTiming?
        public init() {}
    }

    public init(broadcastStarted: Double = 0) { self.broadcastStarted = broadcastStarted }

    /// Per worker that answered, seconds from the start of the broadcast to its gradient.
    public var answerSeconds: [PeerID: Double] {
        workers.compactMapValues { exchange in exchange.arrived.map { $0 - broadcastStarted } }
    }
}

/// Something that happened in a coordinator node. Delivered on the node's thread, in order.
public enum CoordinatorNodeEvent: Sendable, CustomStringConvertible {
    /// The ROUTER is bound; start workers pointed at `endpoint` (the actual port if `*` was asked).
    case listening(endpoint: String)
    /// A worker was admitted at `step` (to a slot, or as a spare); `workers` hold the slots, in order.
    case workerJoined(WorkerInfo, joined: Int, expected: Int, step: Int, workers: [WorkerInfo])
    /// Blocks changed hands at `step` because of `why`; `workers` are the members with their new shares.
    case sharesChanged(workers: [WorkerInfo], step: Int, why: String)
    /// A peer was refused (version mismatch, cluster full, training under way); it was told why.
    case workerRefused(peer: PeerID, name: String, reason: String)
    /// Every worker holds its shard; step 0 is on its way.
    case trainingStarted(workers: [WorkerInfo])
    case stepCompleted(StepMetrics)
    /// The test evaluation of `epoch` is done (`ModelHost.evaluation(ofEpoch:)`, run off the node's
    /// thread; later steps may have completed meanwhile).
    case epochCompleted(epoch: Int, evaluation: EpochEvaluation?)
    /// A worker was declared dead at `step` (silent past the liveness window, left, reconnected,
    /// evicted); the micro-batches it owed are computed by others.
    case workerDied(WorkerInfo, step: Int, reason: String)
    /// Frames from `peer` did not decode; they were ignored.
    case undecodable(peer: PeerID, error: MessageDecodingError)
    /// A message was ignored (stale or duplicate gradient, unknown sender...): debug-level news.
    case ignored(peer: PeerID, kind: MessageKind?, reason: String)
    /// A peer's first message came from this address (libzmq's "Peer-Address": the IP for tcp,
    /// "localhost:UID:GID:PID" for ipc; "local" when libzmq has none, as for inproc).
    case peerAddress(peer: PeerID, address: String)
    /// The run ended; the same outcome is returned by `run()`.
    case ended(NodeOutcome)

    public var description: String {
        switch self {
        case .listening(let endpoint):
            return "listening on \(endpoint)"
        case .workerJoined(let info, let joined, let expected, let step, let workers):
            let when = step > 0 ? " at step \(step)" : ""
            return info.slot == nil
                ? "\(info) joined\(when) and waits for a free slot (all \(expected) are taken)"
                : "\(info) joined\(when); joined \(joined) of \(expected): \(workers.map(\.name).joined(separator: ", "))"
        case .sharesChanged(let workers, let step, let why):
            let shares = workers.map { "\($0.name) blocks \(describeBlocks($0.blocks))" }.joined(separator: ", ")
            return "step \(step): after \(why), the shares are \(shares)"
        case .workerRefused(let peer, let name, let reason):
            return "refused \"\(name)\" (\(peer)): \(reason)"
        case .trainingStarted(let workers):
            return "training started with \(workers.count) workers: \(workers.map(\.name).joined(separator: ", "))"
        case .stepCompleted(let metrics):
            return "step \(metrics.step) (epoch \(metrics.epoch)): loss \(metrics.meanLoss), "
                + "accuracy \(metrics.accuracy), \(metrics.sampleCount) samples, rate \(metrics.learningRate), "
                + "gather \(milliseconds(metrics.gatherSeconds)) ms, apply \(milliseconds(metrics.applySeconds)) ms"
        case .epochCompleted(let epoch, let evaluation):
            return "epoch \(epoch) completed"
                + (evaluation.map { ": test accuracy \($0.accuracy), test loss \($0.meanLoss)" } ?? "")
        case .workerDied(let info, let step, let reason):
            return "\(info) died at step \(step): \(reason)"
        case .undecodable(let peer, let error):
            return "undecodable message from \(peer): \(error)"
        case .ignored(let peer, let kind, let reason):
            return "ignored \(kind.map { "\($0)" } ?? "message") from \(peer): \(reason)"
        case .peerAddress(let peer, let address):
            return "\(peer) connected from \(address)"
        case .ended(let outcome):
            return "coordinator \(outcome)"
        }
    }
}

// MARK: Worker events

/// Something that happened in a worker node. Delivered on the node's polling thread, in order.
public enum WorkerNodeEvent: Sendable, CustomStringConvertible {
    /// A DEALER was connected and hello sent (`attempt` 0 first, then one per reconnect).
    case connecting(endpoint: String, attempt: Int)
    case welcomed(workerIndex: Int, workerCount: Int)
    /// The shard arrived and the gradient computer was built from its settings.
    case shardReceived(sampleCount: Int)
    /// A step's gradient was computed (`seconds` of compute on the compute thread) and sent.
    case stepComputed(step: Int, sampleCount: Int, seconds: Double)
    /// The coordinator was silent past the liveness window; reconnecting after a backoff.
    case coordinatorLost(silentTicks: Int, reconnectInTicks: Int, attempt: Int)
    /// A message was ignored or did not decode: debug-level news.
    case ignored(reason: String)
    /// The run ended; the same outcome is returned by `run()`.
    case ended(NodeOutcome)

    public var description: String {
        switch self {
        case .connecting(let endpoint, let attempt):
            return attempt == 0
                ? "connecting to \(endpoint)" : "reconnecting to \(endpoint) (attempt \(attempt))"
        case .welcomed(let index, let count):
            return index < count ? "welcomed as worker \(index) of \(count)" : "welcomed as a spare; waiting for a slot"
        case .shardReceived(let count): return "shard of \(count) samples received"
        case .stepComputed(let step, let count, let seconds):
            return "step \(step): gradient of \(count) samples in \(milliseconds(seconds)) ms"
        case .coordinatorLost(let silent, let backoff, let attempt):
            return "coordinator silent for \(silent) ticks; reconnect attempt \(attempt) in \(backoff) ticks"
        case .ignored(let reason): return "ignored: \(reason)"
        case .ended(let outcome): return "worker \(outcome)"
        }
    }
}

func milliseconds(_ seconds: Double) -> String { String(Int((seconds * 1000).rounded())) }

/// A worker's time per step, from its `stepComputed` events: computing, and what lies between two
/// computations (sending the gradient, waiting for the other workers and the update, receiving the
/// next weights), which is the step's communication and waiting as this worker sees them.
public struct WorkerStepTimes: Sendable, Equatable {
    public private(set) var steps = 0
    private var computeSeconds = 0.0, betweenSeconds = 0.0
    private var lastReportedAt: Double?

    public init() {}

    /// Records a step computed in `seconds` and reported at `time` (seconds on a monotonic clock).
    public mutating func add(seconds: Double, reportedAt time: Double) {
        if let last = lastReportedAt { betweenSeconds += max(0, time - last - seconds) }
        lastReportedAt = time
        computeSeconds += seconds
        steps += 1
    }

    /// Mean compute time per step (0 before the first).
    public var meanComputeSeconds: Double { steps > 0 ? computeSeconds / Double(steps) : 0 }
    /// Mean time between the end of one computation and the start of the next (0 before the second).
    public var meanBetweenSeconds: Double { steps > 1 ? betweenSeconds / Double(steps - 1) : 0 }

    /// One line for the worker's log, read by Cluster/benchmark.sh.
    public var summary: String {
        "computed \(steps) steps, \(String(format: "%.1f", meanComputeSeconds * 1000)) ms each on average; "
            + "\(String(format: "%.1f", meanBetweenSeconds * 1000)) ms between steps (sending, waiting, receiving)"
    }
}
