// The worker's protocol logic as a pure state machine: events in, actions out.
// It says hello with its protocol version, receives its shard, answers each step with one gradient
// (computed by the caller), sends heartbeats and, in the manner of the ZeroMQ guide's Paranoid Pirate,
// declares the coordinator lost after a silent liveness window and asks the caller to reconnect with an
// exponential backoff. It never reads a clock, never touches a socket and knows nothing of the model.

/// The settings of a worker. Durations are in ticks (see `ProtocolInfo.recommendedTickMilliseconds`).
public struct WorkerConfiguration: Sendable {
    /// A human-readable name for logs (host name, pid...). Not an identity: the transport has one.
    public var name: String
    /// Compute threads, reported to the coordinator for its logs.
    public var threads = 1
    /// The coordinator is lost after this many ticks without any message from it.
    public var livenessTicks = 50
    /// While waiting for the shard after the welcome, the coordinator's heartbeats queue behind the
    /// shard (up to 47 MB / workers), so the window is stretched to this many ticks.
    public var shardTimeoutTicks = 600
    /// Ticks between heartbeats to the coordinator.
    public var heartbeatIntervalTicks = 10
    /// Ticks to wait before the first reconnect; doubled each further attempt up to the maximum.
    public var initialBackoffTicks = 10
    public var maximumBackoffTicks = 320
    /// Reconnects tried in a row without being welcomed before the worker gives up.
    public var maximumReconnectAttempts = 8
    /// Ticks without any message from the coordinator after which the worker stops reconnecting and
    /// fails, whatever the attempts (`mnist worker --reconnect-timeout`, 10 minutes by default, sets
    /// this and lifts the attempt limit, so workers outlast a coordinator's restart).
    public var reconnectTimeoutTicks = Int.max
    /// Names this worker process (its lower 48 bits); set it to a random number per process. With the
    /// count of reconnects it makes the `session` of the hello (`Session`).
    public var incarnation: UInt64 = 0
    /// The protocol version this worker speaks (tests set another one to provoke a mismatch).
    public var protocolVersion = ProtocolInfo.version
    /// The caller's tick length in seconds, used only to put durations into human words in failure
    /// reasons; the machine itself never reads a clock.
    public var tickSecondsForMessages: Double?

    public init(name: String, threads: Int = 1) {
        self.name = name
        self.threads = threads
    }
}

/// Something that happened to the worker.
public enum WorkerEvent: Sendable {
    /// Say hello on the freshly connected socket.
    case start
    /// A message arrived from the coordinator.
    case received(Message)
    /// Frames arrived but did not decode; logged as ignored.
    case undecodable(MessageDecodingError)
    /// One tick of time passed. Keep ticking while a gradient is being computed, or heartbeats stop.
    case tick
    /// The caller finished a `computeGradient` action. Results for a step no longer wanted are ignored.
    case gradientComputed(GradientReport)
    /// The caller cannot go on (bad settings, model mismatch, interrupt): tell the coordinator and stop.
    case abort(reason: String)
    /// The coordinator's own liveness window (from its settings): the coordinator may fall silent
    /// this long (an evaluation, a checkpoint) before it counts as lost. The larger of this and
    /// `WorkerConfiguration.livenessTicks` applies from now on.
    case coordinatorLivenessWindow(ticks: Int)
}

/// Something the caller must do or may report.
public enum WorkerAction: Equatable, Sendable {
    /// Encode `message` and send it to the coordinator.
    case send(Message)
    /// The coordinator was silent past the liveness window; `reconnect` follows after the backoff.
    case coordinatorLost(silentTicks: Int, reconnectInTicks: Int, attempt: Int)
    /// Close the socket and connect a fresh one; send the messages that follow on the new socket.
    case reconnect(attempt: Int)
    /// The coordinator accepted this worker.
    case welcomed(workerIndex: Int, workerCount: Int)
    /// Keep this shard's samples beside any held before (the first one also builds the model from its
    /// settings); `ready` has been queued after it.
    case shardReceived(Shard)
    /// Compute the summed gradient of the samples `sampleKeys` at `weights`, then deliver
    /// `gradientComputed` with the same step. Ticks should keep coming meanwhile.
    case computeGradient(StepAssignment)
    /// A message was ignored; worth a debug log line.
    case ignored(kind: MessageKind?, reason: String)
    /// The coordinator ended the run; exit zero.
    case finished(reason: String)
    /// The worker cannot go on; exit non-zero with this reason.
    case failed(reason: String)
}

/// The worker state machine. Drive it with `handle(_:)` and perform the returned actions in order.
public struct Worker {
    public enum Phase: Equatable, Sendable {
        case idle
        /// Hello sent, waiting for welcome or refuse.
        case connecting
        /// Welcomed, waiting for the shard.
        case awaitingShard
        /// Holding the shard, between steps.
        case ready
        /// Computing the gradient of a step.
        case computing(step: Int)
        /// The coordinator went silent; reconnecting after the backoff.
        case backingOff(ticksLeft: Int)
        case finished
        case failed
    }

    public let configuration: WorkerConfiguration
    public private(set) var phase = Phase.idle
    private var silentTicks = 0
    /// Ticks of silence after which the coordinator is lost (see `coordinatorLivenessWindow`).
    private var livenessTicks: Int
    private var ticksSinceHeartbeat = 0
    private var reconnectAttempts = 0
    /// Ticks since the last message from the coordinator, across reconnects.
    private var ticksSinceContact = 0
    private var sessionsStarted: UInt64 = 0
    /// The key ranges of the shards held.
    private var held: [Range<Int>] = []
    private var pixelsPerImage: Int?
    /// Welcomed as a spare: the coordinator's heartbeats are not held up behind a shard, so the plain
    /// liveness window applies until a slot (and the samples) come.
    private var isSpare = false
    /// The newest step asked for, the answers given for it (by blocks), the request being computed
    /// and those waiting behind it (a step may ask for more blocks after another worker is lost).
    private var currentStep = -1
    private var answered: [[Int]: GradientReport] = [:]
    private var computingBlocks: [Int]?
    private var waiting: [StepAssignment] = []

    public init(configuration: WorkerConfiguration) {
        self.configuration = configuration
        livenessTicks = configuration.livenessTicks
    }

    private var hello: Message {
        .hello(
            protocolVersion: configuration.protocolVersion, workerName: configuration.name,
            threads: configuration.threads,
            session: Session(
                process: configuration.incarnation, reconnects: UInt16(truncatingIfNeeded: sessionsStarted)
            )
            .value)
    }

    /// Feeds one event; returns the actions to perform, in order.
    public mutating func handle(_ event: WorkerEvent) -> [WorkerAction] {
        var actions: [WorkerAction] = []
        switch event {
        case .start:
            guard phase == .idle else { break }
            phase = .connecting
            ticksSinceHeartbeat = 0
            actions.append(.send(hello))
        case .received(let message):
            receive(message, into: &actions)
        case .undecodable(let error):
            actions.append(.ignored(kind: nil, reason: "undecodable message: \(error)"))
        case .tick:
            tick(into: &actions)
        case .gradientComputed(let report):
            guard case .computing(let step) = phase, step == report.step, let blocks = computingBlocks else {
                actions.append(
                    .ignored(kind: .gradient, reason: "computed gradient for step \(report.step) is no longer wanted"))
                break
            }
            computingBlocks = nil
            phase = .ready
            if step == currentStep {
                answered[blocks] = report
                actions.append(.send(.gradient(report)))
            } else {
                actions.append(.ignored(kind: .gradient, reason: "computed gradient for step \(step) is stale"))
            }
            startNext(into: &actions)
        case .coordinatorLivenessWindow(let ticks):
            livenessTicks = max(configuration.livenessTicks, ticks)
        case .abort(let reason):
            guard !isOver else { break }
            phase = .failed
            actions.append(.send(.goodbye(reason: reason)))
            actions.append(.failed(reason: reason))
        }
        return actions
    }

    private var isOver: Bool { phase == .finished || phase == .failed }

    private mutating func receive(_ message: Message, into actions: inout [WorkerAction]) {
        switch phase {
        case .idle, .finished, .failed, .backingOff:
            actions.append(.ignored(kind: message.kind, reason: "worker is \(phase)"))
            return
        case .connecting, .awaitingShard, .ready, .computing:
            break
        }
        silentTicks = 0
        ticksSinceContact = 0
        switch message {
        case .heartbeat:
            break
        case .welcome(let index, let count):
            switch phase {
            case .connecting:
                phase = .awaitingShard
                reconnectAttempts = 0
                ticksSinceHeartbeat = 0
            case .awaitingShard where isSpare && index < count:
                break  // A spare given a slot: its samples follow.
            default:
                actions.append(.ignored(kind: .welcome, reason: "already welcomed"))
                return
            }
            isSpare = index >= count
            actions.append(.welcomed(workerIndex: index, workerCount: count))
        case .refuse(let version, let reason):
            phase = .failed
            actions.append(
                .failed(
                    reason: "coordinator refused this worker: \(reason) "
                        + "(coordinator protocol version \(version), this worker \(configuration.protocolVersion))"))
        case .shard(let shard):
            if phase == .connecting {
                actions.append(.ignored(kind: .shard, reason: "shard before welcome"))
                return
            }
            let keys = shard.firstKey..<(shard.firstKey + shard.sampleCount)
            if !held.contains(keys) {
                guard held.allSatisfy({ !$0.overlaps(keys) }),
                    pixelsPerImage ?? shard.pixelsPerImage == shard.pixelsPerImage
                else {
                    actions.append(
                        .ignored(kind: .shard, reason: "keys \(keys) overlap the samples held, or images changed size"))
                    return
                }
                held.append(keys)
                pixelsPerImage = shard.pixelsPerImage
                actions.append(.shardReceived(shard))
                if phase == .awaitingShard { phase = .ready }
            }
            // Also answers a resent shard.
            actions.append(.send(.ready(firstKey: shard.firstKey, sampleCount: shard.sampleCount)))
        case .step(let assignment):
            step(assignment, into: &actions)
        case .shutdown(let reason):
            phase = .finished
            actions.append(.finished(reason: reason))
        case .hello, .ready, .gradient, .goodbye:
            actions.append(.ignored(kind: message.kind, reason: "not a coordinator-to-worker message"))
        }
    }

    private mutating func step(_ assignment: StepAssignment, into actions: inout [WorkerAction]) {
        switch phase {
        case .ready, .computing: break
        default:
            actions.append(.ignored(kind: .step, reason: "step \(assignment.step) before the shard arrived"))
            return
        }
        let blocks = assignment.blocks
        if assignment.step < currentStep {
            actions.append(
                .ignored(kind: .step, reason: "stale step \(assignment.step), already asked for \(currentStep)"))
            return
        }
        if assignment.step > currentStep {
            currentStep = assignment.step
            answered = [:]
            waiting = []
        }
        if let report = answered[blocks] {
            actions.append(.send(.gradient(report)))  // The coordinator lost our answer: send it again.
        } else if (phase == .computing(step: assignment.step) && computingBlocks == blocks)
            || waiting.contains(where: { $0.blocks == blocks })
        {
            actions.append(.ignored(kind: .step, reason: "step \(assignment.step) is being computed"))
        } else if let bad = assignment.sampleKeys.first(where: { key in !held.contains { $0.contains(Int(key)) } }) {
            phase = .failed
            let reason = "step \(assignment.step) asks for sample key \(bad), which is in none of the shards held"
            actions.append(.send(.goodbye(reason: reason)))
            actions.append(.failed(reason: reason))
        } else {
            waiting.append(assignment)
            if phase == .ready { startNext(into: &actions) }
        }
    }

    /// Starts computing the next waiting request, if any.
    private mutating func startNext(into actions: inout [WorkerAction]) {
        guard phase == .ready, !waiting.isEmpty else { return }
        let next = waiting.removeFirst()
        phase = .computing(step: next.step)
        computingBlocks = next.blocks
        actions.append(.computeGradient(next))
    }

    private mutating func tick(into actions: inout [WorkerAction]) {
        switch phase {
        case .idle, .finished, .failed:
            return
        case .backingOff(let ticksLeft):
            ticksSinceContact += 1
            guard ticksLeft <= 1 else {
                phase = .backingOff(ticksLeft: ticksLeft - 1)
                return
            }
            phase = .connecting
            silentTicks = 0
            ticksSinceHeartbeat = 0
            sessionsStarted &+= 1
            actions.append(.reconnect(attempt: reconnectAttempts))
            actions.append(.send(hello))
            return
        case .connecting, .awaitingShard, .ready, .computing:
            break
        }
        silentTicks += 1
        ticksSinceContact += 1
        let window =
            phase == .awaitingShard && !isSpare
            ? max(livenessTicks, configuration.shardTimeoutTicks) : livenessTicks
        if silentTicks > window {
            reconnectAttempts += 1
            guard reconnectAttempts <= configuration.maximumReconnectAttempts,
                ticksSinceContact < configuration.reconnectTimeoutTicks
            else {
                phase = .failed
                let seconds = configuration.tickSecondsForMessages
                actions.append(
                    .failed(
                        reason:
                            "coordinator silent: no message for \(describeTicks(ticksSinceContact, seconds)), "
                            + "\(reconnectAttempts - 1) reconnects failed"
                            + (configuration.reconnectTimeoutTicks < Int.max
                                ? " (reconnect timeout \(describeTicks(configuration.reconnectTimeoutTicks, seconds)))"
                                : "")
                            + "; is it running?"))
                return
            }
            let shift = min(reconnectAttempts - 1, 30)
            let backoff = min(configuration.initialBackoffTicks << shift, configuration.maximumBackoffTicks)
            phase = .backingOff(ticksLeft: max(1, backoff))
            // A reconnect starts over: the coordinator will treat us as new.
            held = []
            pixelsPerImage = nil
            isSpare = false
            currentStep = -1
            answered = [:]
            computingBlocks = nil
            waiting = []
            actions.append(
                .coordinatorLost(
                    silentTicks: silentTicks, reconnectInTicks: backoff,
                    attempt: reconnectAttempts))
            return
        }
        // Heartbeats flow from hello on, so that a coordinator whose welcome was lost still hears from us.
        ticksSinceHeartbeat += 1
        if ticksSinceHeartbeat >= configuration.heartbeatIntervalTicks {
            ticksSinceHeartbeat = 0
            actions.append(.send(.heartbeat))
        }
    }
}
