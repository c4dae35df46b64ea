// A worker as a running node: a ZeroMQ DEALER driving `DataParallel.Worker` in real time.
// It says hello, reconnects with a fresh socket when the state machine asks (Paranoid Pirate), builds
// its `GradientComputer` from the shard's settings and computes each step: a short one on the polling
// thread, a long one on a separate compute queue so that heartbeats keep flowing meanwhile. The
// protocol logic lives in the state machine; the model is any `GradientComputer`, so nothing here
// depends on ConvNet.
import DataParallel
import Foundation
import Host
import Logging
import ZeroMQ

/// The settings of a worker node: the state machine's settings, plus what only a running node needs
/// (where to connect, how long a tick lasts, how long the goodbye may take to leave).
public struct WorkerNodeConfiguration: Sendable {
    /// The coordinator's endpoint, e.g. `tcp://coordinator-host:5555`.
    public var endpoint: String
    /// The worker state machine's settings: name, threads, liveness (50 ticks = 5 s at 100 ms),
    /// shard timeout, heartbeats, reconnect backoff, protocol version and incarnation (random here by
    /// default). Durations are in ticks of `tickMilliseconds`; the node sets `tickSecondsForMessages`
    /// from it, replacing any value given.
    public var stateMachine: WorkerConfiguration
    /// Wall time per tick, in milliseconds.
    public var tickMilliseconds = ProtocolInfo.recommendedTickMilliseconds
    /// After sending `goodbye`, how long the socket stays open so it leaves (sockets linger 0).
    public var goodbyeFlushMilliseconds = 200
    /// The largest message taken from the coordinator (ZMQ_MAXMSGSIZE): far above a whole MNIST shard
    /// (47 MB), far below what would exhaust a worker's memory.
    public var maximumMessageBytes: Int64 = 512 << 20
    /// CURVE keys, needed when the coordinator has them (`--keys`); nil speaks plaintext.
    public var security: WorkerSecurity?

    /// - Parameters:
    ///   - name: a name for the coordinator's logs (host name and pid, say).
    ///   - threads: compute threads, reported to the coordinator (the gradient computer decides how to
    ///     use them).
    public init(endpoint: String, name: String, threads: Int = 1) {
        self.endpoint = endpoint
        stateMachine = WorkerConfiguration(name: name, threads: threads)
        // Distinguishes this process's sessions from earlier ones.
        stateMachine.incarnation = UInt64.random(in: 0...(UInt64.max >> 16))  // The session's 48 bits.
    }
}

/// Runs one worker of a synchronous data-parallel training over a ZeroMQ DEALER.
///
/// Threads: `run()` owns the sockets and calls `onEvent` on the calling thread; the gradient computer
/// runs on the node's private serial compute queue, on the calling thread itself while steps take less
/// than a quarter of the heartbeat interval. `requestStop(reason:)` may be called from any
/// thread: the worker sends `goodbye` (the coordinator then treats it as dead) and returns `.failed`.
// @unchecked Sendable: the sockets live in `run()`'s own state; the calls from other threads,
// `requestStop` and `simulateCrash`, go through `StopRequest`s, which are locked.
public final class WorkerNode: @unchecked Sendable {
    public let configuration: WorkerNodeConfiguration

    private let makeGradientComputer: GradientComputerFactory
    private let logger: Logger
    private let onEvent: (WorkerNodeEvent) -> Void
    private let stop = StopRequest()
    private let crash = StopRequest()

    /// - Parameters:
    ///   - makeGradientComputer: called on the `run()` thread when the shard arrives.
    ///   - onEvent: called on the `run()` thread for every event, in order.
    public init(
        configuration: WorkerNodeConfiguration, makeGradientComputer: @escaping GradientComputerFactory,
        logger: Logger = Logger(label: "mnist.worker"),
        onEvent: @escaping (WorkerNodeEvent) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.makeGradientComputer = makeGradientComputer
        self.logger = logger
        self.onEvent = onEvent
    }

    /// Asks the running node to leave: it says goodbye with this reason and returns `.failed`.
    public func requestStop(reason: String) { stop.request(reason) }

    /// Test hook: makes the node vanish as a killed process would: no goodbye, no further message, the
    /// socket closed at once, `run()` returns `.failed`. For failure tests of the coordinator.
    public func simulateCrash() { crash.request("simulated crash") }

    /// Connects, joins, computes until the coordinator says shutdown, and returns how it ended.
    /// Never hangs: an unreachable or silent coordinator ends the run after the reconnect attempts.
    public func run() -> NodeOutcome {
        var run = Run(node: self)
        var outcome: NodeOutcome
        do {
            outcome = try run.execute()
        } catch {
            outcome = .failed(reason: "worker socket error: \(error)")
        }
        switch outcome {
        case .finished: logger.info("\(WorkerNodeEvent.ended(outcome))")
        case .failed: logger.error("\(WorkerNodeEvent.ended(outcome))")
        }
        onEvent(.ended(outcome))
        return outcome
    }

    // MARK: Compute queue

    /// The gradient computer and its finished results, shared between the polling thread and the
    /// compute queue. `computer` is touched only on the compute queue; `results` under `lock`.
    // @unchecked Sendable: `computer` is touched on the serial compute queue only, `results` under
    // `lock` (see above).
    private final class ComputeBox: @unchecked Sendable {
        var computer: (any GradientComputer)?
        private let lock = NSLock()
        private var results: [(generation: Int, report: GradientReport, seconds: Double)] = []

        func post(generation: Int, report: GradientReport, seconds: Double) {
            lock.lock()
            defer { lock.unlock() }
            results.append((generation, report, seconds))
        }

        func take() -> [(generation: Int, report: GradientReport, seconds: Double)] {
            lock.lock()
            defer { lock.unlock() }
            defer { results = [] }
            return results
        }
    }

    /// A socket that may move to the compute queue (used there only, after being handed over).
    // @unchecked Sendable: a socket belongs to one thread; this one is handed to the compute queue
    // once and used there only (closed there too, after the last compute).
    private final class HandedOverSocket: @unchecked Sendable {
        let socket: Socket
        init(_ socket: Socket) { self.socket = socket }
    }

    // MARK: One run

    /// The state of one `run()`: the sockets, the state machine and the compute queue. `NodeDriver`
    /// runs its loop; this type only turns arrivals into events and performs the machine's actions.
    private struct Run: NodeRole {
        let node: WorkerNode
        var outcome: NodeOutcome?
        var machine: Worker
        var context: Context?
        var dealer: Socket?
        /// Handshake events of `dealer`: a refused key ends the run with a clear reason.
        var monitor: SocketMonitor?
        var warnedAboutHandshake = false
        /// The compute queue wakes the polling thread through this inproc pair when a gradient is ready.
        var wakeReceiver: Socket?
        var wake: HandedOverSocket?
        /// Events taken from the compute queue, not yet fed to the machine.
        var computed: [WorkerEvent] = []
        var attempt = 0
        var generation = 0
        var sentGoodbye = false
        /// How long the last step took to compute (nil before the first): it decides where the next runs.
        var lastComputeSeconds: Double?
        /// Whether the first shard built the gradient computer (later shards add samples to it).
        var hasComputer = false
        let box = ComputeBox()
        let queue = DispatchQueue(label: "mnist.worker.compute")
        /// The origin of this worker's clock for gradient timing (`WorkerTiming`).
        let clockOrigin = DispatchTime.now().uptimeNanoseconds
        /// When each step still to be answered arrived, on that clock.
        var stepReceivedAt: [Int: UInt64] = [:]

        /// Nanoseconds since `clockOrigin`, plus 1 (0 means "not measured" on the wire).
        func workerClock() -> UInt64 { DispatchTime.now().uptimeNanoseconds - clockOrigin + 1 }

        init(node: WorkerNode) {
            self.node = node
            machine = Worker(configuration: Self.protocolConfiguration(node.configuration))
        }

        private var configuration: WorkerNodeConfiguration { node.configuration }

        /// Steps that took less than a quarter of the heartbeat interval are computed on the polling
        /// thread; longer ones on the compute queue.
        private var inlineComputeLimitSeconds: Double {
            Double(configuration.stateMachine.heartbeatIntervalTicks * configuration.tickMilliseconds) / 4000
        }

        mutating func execute() throws -> NodeOutcome {
            let context = try Context()
            self.context = context
            let wakeAddress = "inproc://mnist-worker-wake-\(UInt64.random(in: 0...UInt64.max))"
            let wakeReceiver = try context.makeSocket(.pair)
            defer { wakeReceiver.close() }
            try wakeReceiver.bind(wakeAddress)
            self.wakeReceiver = wakeReceiver
            let wakeSender = try context.makeSocket(.pair)
            try wakeSender.connect(wakeAddress)
            let handedOver = HandedOverSocket(wakeSender)
            wake = handedOver
            defer { queue.async { handedOver.socket.close() } }  // Closed on the queue, after any compute.
            defer { dealer?.close() }
            defer { monitor?.socket.close() }

            try connect()
            try handle(.start)
            return try NodeDriver.run(&self, tickMilliseconds: configuration.tickMilliseconds, stop: node.stop)
        }

        // MARK: The role

        var pollItems: [(socket: Socket, events: PollEvents)] {
            guard let dealer, let wakeReceiver else { return [] }
            return [(dealer, .readable), (wakeReceiver, .readable)] + (monitor.map { [($0.socket, .readable)] } ?? [])
        }
        var tickEvent: WorkerEvent { .tick }
        var vanishReason: String? { node.crash.reason }
        func stopEvent(reason: String) -> WorkerEvent { .abort(reason: "stopped: \(reason)") }

        /// Finished computations first (in order), then the next message from the coordinator.
        mutating func nextEvent() throws -> WorkerEvent? {
            if computed.isEmpty, let wakeReceiver {
                while try wakeReceiver.receive() != nil {}
                for result in box.take() where result.generation == generation {
                    lastComputeSeconds = result.seconds
                    node.emit(
                        .stepComputed(
                            step: result.report.step, sampleCount: result.report.sampleCount, seconds: result.seconds))
                    computed.append(.gradientComputed(result.report))
                }
            }
            if !computed.isEmpty { return computed.removeFirst() }
            if let refusal = try handshakeRefusal() { return .abort(reason: refusal) }
            guard let dealer, let frames = try dealer.receiveFrames() else { return nil }
            do {
                let message = try Message.decode(frames, supportedVersion: configuration.stateMachine.protocolVersion)
                if case .step(let assignment) = message, stepReceivedAt[assignment.step] == nil {
                    if stepReceivedAt.count > 64 { stepReceivedAt.removeAll() }  // Never answered: forgotten.
                    stepReceivedAt[assignment.step] = workerClock()
                }
                return .received(message)
            } catch let error as MessageDecodingError {
                node.logger.warning("undecodable message from the coordinator: \(error)")
                return .undecodable(error)
            }
        }

        mutating func handle(_ event: WorkerEvent) throws { try perform(machine.handle(event)) }

        /// Keeps the socket open briefly so a queued `goodbye` leaves.
        func finish() {
            if sentGoodbye, let dealer {
                NodeDriver.flush(dealer, milliseconds: configuration.goodbyeFlushMilliseconds)
            }
        }

        private static func protocolConfiguration(_ configuration: WorkerNodeConfiguration) -> WorkerConfiguration {
            var result = configuration.stateMachine
            result.tickSecondsForMessages = Double(max(1, configuration.tickMilliseconds)) / 1000
            return result
        }

        /// Why the coordinator will never let this worker in, from the handshake events, or nil. A
        /// failure libzmq does not detail (such as a wrong coordinator.public) is logged once: the
        /// reconnect attempts go on.
        private mutating func handshakeRefusal() throws -> String? {
            while let event = try monitor?.next() {
                if event.kind == .handshakeFailedAuthentication {
                    let key = configuration.security.map { "the key \($0.keyName) (\($0.keyPair.publicKey))" }
                    return "the coordinator refused \(key ?? "this worker") at the handshake (ZAP status "
                        + "\(event.value)): copy its .public file into the coordinator's keys folder and restart the "
                        + "coordinator, or use a key the coordinator trusts"
                }
                if event.isMechanismMismatch {
                    return configuration.security == nil
                        ? "the coordinator requires CURVE keys: pass --keys with a folder holding coordinator.public "
                            + "and a worker secret key (see `mnist keygen`)"
                        : "the coordinator does not use keys, but this worker has --keys: drop --keys, or start the "
                            + "coordinator with --keys"
                }
                if event.kind == .handshakeFailedNoDetail && !warnedAboutHandshake {
                    warnedAboutHandshake = true
                    node.logger.warning(
                        "the handshake with the coordinator failed\(configuration.security == nil ? "" : ": check that coordinator.public in the keys folder is the coordinator's key"); retrying"
                    )
                }
            }
            return nil
        }

        /// Closes the current DEALER (if any) and connects a fresh one: a new peer for the coordinator.
        private mutating func connect() throws {
            guard let context else { return }
            dealer?.close()
            monitor?.socket.close()
            let socket = try context.makeSocket(.dealer)
            try socket.setLinger(milliseconds: 0)
            try socket.setMaximumMessageSize(configuration.maximumMessageBytes)
            if let security = configuration.security {
                try socket.makeCurveClient(
                    serverPublicKey: security.coordinatorPublicKey, keyPair: security.keyPair)
            }
            monitor = try socket.monitor(.handshakeFailures)
            try socket.connect(configuration.endpoint)
            dealer = socket
            let event = WorkerNodeEvent.connecting(endpoint: configuration.endpoint, attempt: attempt)
            node.report(event, at: .info)
        }

        private mutating func perform(_ actions: [WorkerAction]) throws {
            var pending = actions[...]
            while let action = pending.popFirst() {
                switch action {
                case .send(let message):
                    send(message)
                case .coordinatorLost(let silentTicks, let backoff, let attempt):
                    let event = WorkerNodeEvent.coordinatorLost(
                        silentTicks: silentTicks, reconnectInTicks: backoff, attempt: attempt)
                    node.report(event, at: .warning)
                    generation += 1  // Whatever is being computed belongs to the lost session.
                    hasComputer = false  // The next session starts with a fresh shard.
                case .reconnect(let attempt):
                    self.attempt = attempt
                    try connect()
                case .welcomed(let index, let count):
                    let event = WorkerNodeEvent.welcomed(workerIndex: index, workerCount: count)
                    node.report(event, at: .info)
                case .shardReceived(let shard) where hasComputer:
                    let box = self.box
                    queue.async { box.computer?.add(shard) }
                    node.report(.shardReceived(sampleCount: shard.sampleCount), at: .info)
                case .shardReceived(let shard):
                    generation += 1
                    do {
                        let computer = try node.makeGradientComputer(shard.settings, shard)
                        if let seconds = computer.coordinatorLivenessSeconds, seconds.isFinite, seconds > 0 {
                            let ticks = Int(
                                (seconds * 1000 / Double(max(1, configuration.tickMilliseconds))).rounded(.up))
                            pending.append(
                                contentsOf: machine.handle(.coordinatorLivenessWindow(ticks: min(ticks, 1 << 30))))
                        }
                        let box = self.box
                        let handOver = ComputerHandOver(computer)
                        queue.async { box.computer = handOver.computer }
                        hasComputer = true
                    } catch {
                        // Do not report ready; leave with the reason instead.
                        pending =
                            machine.handle(
                                .abort(reason: "cannot build the model from the coordinator's settings: \(error)"))[...]
                        continue
                    }
                    let event = WorkerNodeEvent.shardReceived(sampleCount: shard.sampleCount)
                    node.report(event, at: .info)
                case .computeGradient(let assignment):
                    let box = self.box, generation = self.generation, wake = self.wake
                    let compute: @Sendable () -> Void = {
                        let start = monotonicSeconds()
                        guard var report = box.computer?.gradient(for: assignment) else { return }
                        report.step = assignment.step
                        box.post(generation: generation, report: report, seconds: monotonicSeconds() - start)
                        _ = try? wake?.socket.send([[1]], wait: false)
                    }
                    // A short step runs right here (the queue's sync runs it on this thread): two thread
                    // hand-offs fewer per step, and a step that wedges silences the heartbeats, so the
                    // coordinator notices. Long steps run on the queue while this thread keeps beating.
                    if let last = lastComputeSeconds, last < inlineComputeLimitSeconds {
                        queue.sync(execute: compute)
                    } else {
                        queue.async(execute: compute)
                    }
                case .ignored(let kind, let reason):
                    let text = kind.map { "\($0): \(reason)" } ?? reason
                    node.logger.debug("ignored \(text)")
                    node.emit(.ignored(reason: text))
                case .finished(let reason):
                    outcome = .finished(reason: "coordinator said shutdown: \(reason)")
                case .failed(let reason):
                    outcome = .failed(reason: "\(reason) [coordinator \(configuration.endpoint)]")
                }
            }
        }

        /// Sends without blocking; a message that cannot be queued is logged (liveness covers it).
        private mutating func send(_ message: Message) {
            guard node.crash.reason == nil, let socket = dealer else { return }
            var message = message
            if case .gradient(var report) = message, let received = stepReceivedAt.removeValue(forKey: report.step) {
                report.timing = WorkerTiming(received: received, sent: max(received, workerClock()))
                message = .gradient(report)
            }
            do {
                if try !socket.send(message.frames, wait: false) {
                    node.logger.warning("send queue to the coordinator is full; dropped a \(message.kind) message")
                }
                if case .goodbye = message { sentGoodbye = true }
            } catch {
                node.logger.warning("\(message.kind) not sent: \(error)")
            }
        }

    }

    /// Moves a freshly built computer to the compute queue.
    // @unchecked Sendable: built on the polling thread, then used on the compute queue only.
    private final class ComputerHandOver: @unchecked Sendable {
        let computer: any GradientComputer
        init(_ computer: any GradientComputer) { self.computer = computer }
    }

    private func emit(_ event: WorkerNodeEvent) { onEvent(event) }

    /// Logs `event` at `level` and hands it to the caller.
    private func report(_ event: WorkerNodeEvent, at level: Logger.Level) {
        logger.log(level: level, "\(event)")
        emit(event)
    }
}
