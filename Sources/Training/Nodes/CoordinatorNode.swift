// The coordinator as a running node: a ZeroMQ ROUTER driving `DataParallel.Coordinator` in real time.
// It binds, reports the endpoint, admits workers, broadcasts each step, hands every averaged gradient
// to the `ModelHost` (the optimizer) and reports progress as `CoordinatorNodeEvent`s. The protocol
// logic lives in the state machine; this file only does I/O, the clock and the model calls. It knows
// nothing of ConvNet: the model is any `ModelHost`.
import DataParallel
import Foundation
import Host
import Logging
import MNIST
import ZeroMQ

/// The settings of a coordinator node: the state machine's settings, plus what only a running node
/// needs (where to bind, how long a tick lasts, the join timeout in wall time, the shutdown flush).
public struct CoordinatorNodeConfiguration: Sendable {
    /// Where the ROUTER binds: `tcp://*:5555` for a cluster, `tcp://127.0.0.1:*` for an ephemeral port.
    public var endpoint: String
    /// The coordinator state machine's settings: worker count, batch size, steps (epochs ×
    /// `BatchPlan.stepsPerEpoch`), seed, liveness (the state machine's default is 50 ticks = 5 s at
    /// 100 ms; `mnist coordinator` sets it from `--liveness`, 10 s by default), heartbeats,
    /// resends, the worker death policy (default: stop, so the caller saves the model) and protocol
    /// version. Durations are in ticks of `tickMilliseconds`. The node fills in `settings` from the
    /// model, `joinTimeoutTicks` from `joinTimeoutSeconds` and `tickSecondsForMessages` from
    /// `tickMilliseconds`, replacing any values given there.
    public var stateMachine: CoordinatorConfiguration
    /// Wall time per tick, in milliseconds.
    public var tickMilliseconds = ProtocolInfo.recommendedTickMilliseconds
    /// Seconds to wait for all workers to join and report ready before failing (naming those that did).
    public var joinTimeoutSeconds = 120.0
    /// After the run ends, how long the socket stays open so the `shutdown` messages leave
    /// (sockets linger 0, so closing at once would drop them).
    public var shutdownFlushMilliseconds = 300
    /// CURVE keys: with them, traffic is encrypted and only workers holding an allowed key complete
    /// the handshake; without, anyone who reaches the endpoint may join (see `mnist keygen`).
    public var security: CoordinatorSecurity?
    /// Messages queued per peer and direction at most (ZMQ_SNDHWM and ZMQ_RCVHWM): a worker has a
    /// few in flight at a time (a step, a heartbeat, its samples).
    public var highWaterMark = 16
    /// At most one warning per peer (address or socket) in this many seconds; the rest are counted.
    public var warningWindowSeconds = 60.0

    public init(endpoint: String, workerCount: Int, batchSize: Int, totalSteps: Int, seed: UInt64) {
        self.endpoint = endpoint
        stateMachine = CoordinatorConfiguration(
            workerCount: workerCount, batchSize: batchSize, totalSteps: totalSteps, seed: seed)
    }
}

/// The worker keys evicted so far, shared by the polling thread and the authenticator's thread.
// @unchecked Sendable: `reasons` is read and written under `lock`.
final class EvictedKeys: @unchecked Sendable {
    private let lock = NSLock()
    private var reasons: [String: String] = [:]

    func add(_ key: String, reason: String) {
        lock.lock()
        defer { lock.unlock() }
        if reasons[key] == nil { reasons[key] = reason }
    }

    func reason(_ key: String) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return reasons[key]
    }
}

/// Runs end-of-epoch evaluations one at a time, in order, off the node's polling thread, and hands
/// their results back to it.
// @unchecked Sendable: `results` is read and written under `lock`; the queue is serial.
final class EvaluationQueue: @unchecked Sendable {
    private let queue = DispatchQueue(label: "mnist.coordinator.evaluation")
    private let lock = NSLock()
    private var results: [(epoch: Int, evaluation: EpochEvaluation?)] = []

    func submit(epoch: Int, _ work: @escaping @Sendable () -> EpochEvaluation?) {
        queue.async { [self] in
            let evaluation = work()
            lock.lock()
            results.append((epoch, evaluation))
            lock.unlock()
        }
    }

    /// The results finished so far (each once).
    func take() -> [(epoch: Int, evaluation: EpochEvaluation?)] {
        lock.lock()
        defer { lock.unlock() }
        defer { results = [] }
        return results
    }

    /// Blocks until every submitted evaluation has finished.
    func waitUntilDone() { queue.sync {} }
}

/// Runs the coordinator of a synchronous data-parallel training over a ZeroMQ ROUTER.
///
/// Threads: `run()` owns the socket and calls the model and `onEvent` on the calling thread.
/// `requestStop(reason:)` may be called from any thread (for example a SIGINT handler); the run then
/// sends `shutdown` to every worker and returns `.failed` within about one tick plus the flush time.
// @unchecked Sendable: `model` and the socket are used by the thread in `run()` only; the one call
// from other threads, `requestStop`, goes through `StopRequest`, which is locked.
public final class CoordinatorNode<Model: ModelHost>: @unchecked Sendable {
    public let configuration: CoordinatorNodeConfiguration
    /// The model host; after `run()` returns it holds the last applied step (safe to save).
    /// Read it only when `run()` is not running.
    public private(set) var model: Model

    private let trainingSet: LabeledImages
    private let logger: Logger
    private let onEvent: (CoordinatorNodeEvent) -> Void
    private let stop = StopRequest()
    private let keepWorkers = StopRequest()
    private let warnings: WarningLimiter
    /// Keys of workers evicted in this run, refused at the handshake from then on.
    private let evictedKeys = EvictedKeys()

    /// - Parameters:
    ///   - trainingSet: the samples to shard; `workerCount` must not exceed its count.
    ///   - onEvent: called on the `run()` thread for every event, in order.
    public init(
        configuration: CoordinatorNodeConfiguration, model: Model, trainingSet: LabeledImages,
        logger: Logger = Logger(label: "mnist.coordinator"),
        onEvent: @escaping (CoordinatorNodeEvent) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.model = model
        self.trainingSet = trainingSet
        self.logger = logger
        self.onEvent = onEvent
        warnings = WarningLimiter(windowSeconds: configuration.warningWindowSeconds)
    }

    /// Logs a warning about what `peer` did, unless one about it was logged in the current window.
    private func warn(_ message: String, about peer: String) {
        if let line = warnings.admit(message, about: peer) { logger.warning("\(line)") }
    }

    /// Asks a running (or about to run) node to stop: it returns `.failed` with this reason. With
    /// `releaseWorkers` the workers are told to shut down; without, they keep reconnecting until a
    /// coordinator is back (a restart resuming from a checkpoint). Thread-safe; the first reason wins.
    public func requestStop(reason: String, releaseWorkers: Bool = true) {
        if !releaseWorkers { keepWorkers.request(reason) }
        stop.request(reason)
    }

    /// Binds, waits for the workers, trains, and returns how it ended. Never throws: socket errors
    /// end the run with `.failed` naming the call.
    public func run() -> CoordinatorNodeResult {
        var run = Run(node: self)
        let outcome: NodeOutcome
        do {
            outcome = try run.execute()
        } catch {
            outcome = .failed(reason: "coordinator socket error: \(error)")
        }
        switch outcome {
        case .finished: logger.info("\(CoordinatorNodeEvent.ended(outcome))")
        case .failed: logger.error("\(CoordinatorNodeEvent.ended(outcome))")
        }
        onEvent(.ended(outcome))
        return CoordinatorNodeResult(outcome: outcome, completedSteps: run.completedSteps, endpoint: run.endpoint)
    }

    // MARK: One run

    /// The state of one `run()`: the socket, the state machine and the step timing. `NodeDriver` runs
    /// its loop; this type only turns frames into events and performs the machine's actions.
    private struct Run: NodeRole {
        let node: CoordinatorNode
        var completedSteps = 0
        var endpoint: String?
        var outcome: NodeOutcome?
        /// The step being timed (the last one broadcast), and its exchanges as the coordinator timed them.
        var timedStep: Int?
        var timing = StepTiming()
        /// Peers whose network address was reported (at most 4096: a flood of new peers is not remembered).
        var addressed: Set<PeerID> = []
        /// Bytes handed to the socket and received from it in this run (frames, routing ids excluded).
        var bytesSent = 0, bytesReceived = 0
        var machine: Coordinator
        var router: Socket?
        let evaluations = EvaluationQueue()
        /// With keys, the name of the key each peer authenticated with (from the authenticator's User-Id).
        var keyNames: [PeerID: String] = [:]

        init(node: CoordinatorNode) {
            self.node = node
            machine = Coordinator(
                configuration: Self.protocolConfiguration(node), data: Self.trainingSamples(node.trainingSet))
        }

        private var configuration: CoordinatorNodeConfiguration { node.configuration }

        /// Room above the largest legal frame for what the transport adds (CURVE: 33 bytes).
        static var transportMarginBytes: Int { 256 }

        mutating func execute() throws -> NodeOutcome {
            let workerCount = configuration.stateMachine.workerCount
            let batchSize = configuration.stateMachine.batchSize
            guard workerCount > 0, workerCount <= node.trainingSet.count, batchSize > 0 else {
                return .failed(
                    reason: "cannot split \(node.trainingSet.count) samples among \(workerCount) "
                        + "workers in batches of \(batchSize)")
            }
            let context = try Context()
            let authenticator = try configuration.security.map { try startAuthenticator(context: context, $0) }
            defer { authenticator?.stop() }  // After the router closes (defers run in reverse).
            let router = try context.makeSocket(.router)
            defer { router.close() }
            try router.setLinger(milliseconds: 0)
            try router.setRouterMandatory(true)
            // Per peer, at most this many messages wait in each direction: a peer that does not read, or
            // floods, holds a bounded share of memory (a send beyond it is dropped; resends cover it).
            try router.setSendHighWaterMark(configuration.highWaterMark)
            try router.setReceiveHighWaterMark(configuration.highWaterMark)
            if let security = configuration.security {
                try router.makeCurveServer(secretKey: security.keyPair.secretKey)
            }
            // A frame larger than any a worker may send is refused by libzmq as it arrives (the peer is
            // disconnected), before it takes memory here. libzmq checks the frame as it travels, which
            // under CURVE is 33 bytes longer than the message: hence the margin.
            let largest = Message.largestWorkerFrame(
                parameterCount: node.model.parameters.count, blockCount: machine.plan.blockCount)
            try router.setMaximumMessageSize(Int64(largest + Self.transportMarginBytes))
            let bound = try router.bind(configuration.endpoint)
            endpoint = bound
            self.router = router
            emit(.listening(endpoint: bound))
            try handle(.start(initialWeights: node.model.parameters))
            let outcome = try NodeDriver.run(&self, tickMilliseconds: configuration.tickMilliseconds, stop: node.stop)
            if configuration.stateMachine.auditFraction > 0 {
                node.logger.info(
                    "audits: \(machine.auditedAnswers) answers computed twice and compared, \(machine.auditDisagreements) disagreed"
                )
            }
            if outcome.isFinished { evaluations.waitUntilDone() }  // The last epoch's figures.
            reportEvaluations()
            return outcome
        }

        /// Lets in the workers whose keys `security` allows; refusals are logged, limited per address.
        private func startAuthenticator(context: Context, _ security: CoordinatorSecurity) throws -> Authenticator {
            let logger = node.logger, warnings = node.warnings, allowed = security.allowedWorkers
            let evicted = node.evictedKeys
            return try Authenticator(context: context) { request in
                if request.mechanism == "CURVE", let key = request.clientKey, let name = allowed[key] {
                    guard let why = evicted.reason(name) else { return .allow(userID: name) }
                    let line =
                        "refused a connection from \(request.address): its key \(name) belongs to a worker \(why)"
                    if let admitted = warnings.admit(line, about: request.address) { logger.warning("\(admitted)") }
                    return .deny(reason: "key evicted")
                }
                let what =
                    request.clientKey.map { "its key \($0.prefix(8))… is not a worker key of the keys folder" }
                    ?? "it uses \(request.mechanism) security, not CURVE"
                let line = "refused a connection from \(request.address): \(what)"
                if let admitted = warnings.admit(line, about: request.address) { logger.warning("\(admitted)") }
                return .deny(reason: "key not allowed")
            }
        }

        /// Reports the evaluations finished so far, in order.
        private func reportEvaluations() {
            for (epoch, evaluation) in evaluations.take() {
                report(.epochCompleted(epoch: epoch, evaluation: evaluation), at: .debug)
            }
        }

        // MARK: The role

        var pollItems: [(socket: Socket, events: PollEvents)] { router.map { [($0, .readable)] } ?? [] }
        var tickEvent: CoordinatorEvent { .tick }
        var vanishReason: String? { nil }

        func stopEvent(reason: String) -> CoordinatorEvent {
            node.logger.notice("stop requested: \(reason)")
            return .stop(reason: reason, releaseWorkers: node.keepWorkers.reason == nil)
        }

        /// The next inbound multipart message (frame 0 is the routing id), decoded, or nil. Evaluations
        /// that finished meanwhile are reported first.
        mutating func nextEvent() throws -> CoordinatorEvent? {
            reportEvaluations()
            guard let router, let frames = try router.receiveFrames(), let id = frames.first else { return nil }
            let peer = PeerID(id.bytes)
            bytesReceived += frames.dropFirst().reduce(0) { $0 + $1.byteCount }
            if addressed.count < 4096, addressed.insert(peer).inserted {
                let address = frames.last?.property("Peer-Address") ?? ""
                emit(.peerAddress(peer: peer, address: address.isEmpty ? "local" : address))
            }
            if configuration.security != nil, keyNames[peer] == nil, let key = frames.last?.property("User-Id"),
                !key.isEmpty
            {
                keyNames[peer] = key
            }
            do {
                let message = try Message.decode(
                    Array(frames.dropFirst()), supportedVersion: configuration.stateMachine.protocolVersion)
                // The first gradient of each worker for the current step is timed.
                if case .gradient(let report) = message, timedStep == report.step,
                    timing.workers[peer]?.arrived == nil
                {
                    let now = monotonicSeconds()
                    timing.workers[peer, default: .init()].arrived = now
                    timing.workers[peer, default: .init()].reported = report.timing
                    timing.lastArrival = now
                }
                return .received(message, from: peer)
            } catch let error as MessageDecodingError {
                node.warn("undecodable message from \(peer): \(error)", about: "\(peer)")
                emit(.undecodable(peer: peer, error: error))
                return .undecodable(error, from: peer)
            }
        }

        mutating func handle(_ event: CoordinatorEvent) throws { try perform(machine.handle(event)) }

        /// Keeps the socket open briefly so queued `shutdown` messages reach the workers.
        func finish() {
            if let router { NodeDriver.flush(router, milliseconds: configuration.shutdownFlushMilliseconds) }
        }

        private static func protocolConfiguration(_ node: CoordinatorNode) -> CoordinatorConfiguration {
            let configuration = node.configuration
            var result = configuration.stateMachine
            result.settings = node.model.settings()
            let tickSeconds = Double(max(1, configuration.tickMilliseconds)) / 1000
            result.joinTimeoutTicks = max(1, Int((configuration.joinTimeoutSeconds / tickSeconds).rounded(.up)))
            result.tickSecondsForMessages = tickSeconds
            return result
        }

        private static func trainingSamples(_ images: LabeledImages) -> TrainingSamples {
            TrainingSamples(pixelsPerImage: images.pixelsPerImage, images: images.pixels, labels: images.labels)
        }

        /// Performs the machine's actions in order; `stepCompleted` loops back through the model.
        private mutating func perform(_ actions: [CoordinatorAction]) throws {
            var pending = actions[...]
            while let action = pending.popFirst() {
                switch action {
                case .send(let message, let peer):
                    if case .step(let assignment) = message {
                        let now = monotonicSeconds()
                        if timedStep != assignment.step {
                            timedStep = assignment.step
                            timing = StepTiming(broadcastStarted: now)
                        }
                        if timing.workers[peer]?.stepSent == nil {
                            timing.workers[peer, default: .init()].stepSent = now
                        }
                        send(message, to: peer)
                        timing.broadcastEnded = monotonicSeconds()
                    } else {
                        send(message, to: peer)
                    }
                case .workerJoined(let info, let joined, let expected, let step):
                    let event = CoordinatorNodeEvent.workerJoined(
                        info, joined: joined, expected: expected, step: step, workers: machine.liveWorkers)
                    report(event, at: .info, key: keyNames[info.peer])
                case .sharesChanged(let workers, let step, let why):
                    report(.sharesChanged(workers: workers, step: step, why: why), at: .notice)
                case .workerRefused(let peer, let name, let reason):
                    let event = CoordinatorNodeEvent.workerRefused(peer: peer, name: name, reason: reason)
                    node.warn("\(event)", about: "\(peer)")
                    emit(event)
                case .trainingStarted(let workers):
                    let event = CoordinatorNodeEvent.trainingStarted(workers: workers)
                    report(event, at: .info)
                case .stepCompleted(let result):
                    let gathered = monotonicSeconds()
                    let gatherSeconds = timedStep == nil ? 0 : gathered - timing.broadcastStarted
                    let learningRate = node.model.apply(result)
                    let applied = monotonicSeconds()
                    let applySeconds = applied - gathered
                    timing.gathered = gathered
                    timing.applied = applied
                    completedSteps = result.step + 1
                    let metrics = StepMetrics(
                        step: result.step, epoch: result.epoch, sampleCount: result.sampleCount,
                        lossSum: result.lossSum, correctCount: result.correctCount, learningRate: learningRate,
                        gatherSeconds: gatherSeconds, applySeconds: applySeconds, answerSeconds: timing.answerSeconds,
                        timing: timing, bytesSent: bytesSent, bytesReceived: bytesReceived)
                    node.logger.debug("\(CoordinatorNodeEvent.stepCompleted(metrics))")
                    emit(.stepCompleted(metrics))
                    let stepsPerEpoch = machine.plan.stepsPerEpoch, totalSteps = configuration.stateMachine.totalSteps
                    if (result.step + 1) % stepsPerEpoch == 0 || result.step + 1 == totalSteps {
                        if let work = node.model.evaluation(ofEpoch: result.epoch) {
                            evaluations.submit(epoch: result.epoch, work)
                        } else {
                            report(.epochCompleted(epoch: result.epoch, evaluation: nil), at: .debug)
                        }
                    }
                    pending.append(contentsOf: machine.handle(.weightsUpdated(node.model.parameters)))
                case .referee(let assignment, let shards):
                    let report = node.model.referee(assignment, shards: shards)
                    let blocks = describeBlocks(assignment.microBatches.map(\.block))
                    node.logger.notice(
                        "audit of step \(assignment.step): two workers disagree on blocks \(blocks); the coordinator computed them itself"
                    )
                    pending.append(
                        contentsOf: machine.handle(.refereed(blocks: assignment.microBatches.map(\.block), report)))
                case .workerDied(let info, let step, let reason):
                    let event = CoordinatorNodeEvent.workerDied(info, step: step, reason: reason)
                    let key = keyNames.removeValue(forKey: info.peer)
                    // A worker's own key goes with it when it is evicted; a shared key would shut out all.
                    if let key, key.hasPrefix("worker-"), reason.hasPrefix("evicted") {
                        node.evictedKeys.add(key, reason: "evicted at step \(step) (\(reason))")
                    }
                    report(event, at: .warning, key: key)
                case .ignored(let peer, let kind, let reason):
                    let event = CoordinatorNodeEvent.ignored(peer: peer, kind: kind, reason: reason)
                    report(event, at: .debug)
                case .finished:
                    outcome = .finished(reason: "all \(configuration.stateMachine.totalSteps) steps completed")
                case .failed(let reason):
                    outcome = .failed(reason: reason)
                }
            }
        }

        /// Sends without blocking; a vanished peer or a full queue is logged, not fatal: liveness and
        /// resends take care of it.
        private mutating func send(_ message: Message, to peer: PeerID) {
            guard let router else { return }
            do {
                let frames = message.frames
                bytesSent += frames.reduce(0) { $0 + $1.byteCount }
                if try !router.send([Frame(peer.bytes)] + frames, wait: false) {
                    node.warn("send queue to \(peer) is full; dropped a \(message.kind) message", about: "\(peer)")
                }
            } catch let error as ZeroMQError where error.isHostUnreachable {
                node.logger.debug("\(message.kind) to \(peer) not sent: peer is gone")
            } catch {
                node.logger.warning("\(message.kind) to \(peer) not sent: \(error)")
            }
        }

        private func emit(_ event: CoordinatorNodeEvent) { node.onEvent(event) }

        /// Logs `event` at `level` (naming the worker's key, if it has one) and hands it to the caller.
        private func report(_ event: CoordinatorNodeEvent, at level: Logger.Level, key: String? = nil) {
            node.logger.log(level: level, "\(event)\(key.map { " [key \($0)]" } ?? "")")
            emit(event)
        }
    }
}
