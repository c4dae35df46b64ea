// The coordinator's protocol logic as a pure state machine: events in, actions out.
// It admits workers, gives each a share of the plan's blocks (sending their samples once), runs
// synchronous steps (each block's micro-batch is computed by a worker holding the block; the answers,
// summed along the fixed tree, are finished and averaged here) and keeps the run going through faults:
// a worker that dies, hangs or answers wrongly loses its blocks to the others (or to a spare) and the
// micro-batches it owed are computed again elsewhere, so every step still adds the same micro-batches
// in the same order. It never reads a clock, never touches a socket and knows nothing of the model:
// weights and gradients are flat [Float] slabs, and the caller applies the optimizer between
// `stepCompleted` and `weightsUpdated`.

/// The coordinator state machine. Drive it with `handle(_:)` and perform the returned actions in order.
///
/// Invariants (tested against a simulated cluster with seeded faults): steps complete in order from
/// `firstStep`; each completed step adds every block's micro-batch exactly once, computed at the step's
/// weights by a worker holding the block, so its result has the same bits as one node computing every
/// block, whoever joined, died or was evicted meanwhile; a gradient for another step, a duplicate, or one
/// from an unknown peer is ignored; a worker silent for more than `livenessTicks` ticks is declared dead
/// on the next tick.
public struct Coordinator {
    public enum Phase: Equatable, Sendable {
        case idle, joining, training, finished, failed
    }

    /// A step request sent to a worker and not answered yet.
    private struct Request {
        var blocks: [Int]
        var ticksSinceSent = 0
        var ticksOutstanding = 0
    }

    /// Samples sent to a worker and not acknowledged yet.
    private struct Transfer {
        var blocks: Range<Int>
        var keys: Range<Int>
        var ticksSinceSent = 0
        var ticksOutstanding = 0
    }

    private struct AnsweredRequest: Hashable {
        var peer: PeerID
        var blocks: [Int]
    }

    /// One worker's answer for a step computed again by its auditor, compared before it counts.
    private struct Audit {
        var blocks: [Int]
        var owner: PeerID
        var auditor: PeerID
        var ownerPieces: [GradientPiece]?
        var auditorPieces: [GradientPiece]?
        var awaitingReferee = false
    }

    private struct WorkerState {
        var peer: PeerID
        var name: String
        var threads: Int
        var slot: Int?
        var session: Session
        /// Admission order: spares are promoted first come, first served.
        var admission: Int
        var silentTicks = 0
        /// Blocks whose samples the worker has acknowledged.
        var held: Set<Int> = []
        var hasAcknowledged = false
        var transfers: [Transfer] = []
        var requests: [Request] = []
    }

    public let configuration: CoordinatorConfiguration
    public let plan: BatchPlan
    public let tree: GradientTree
    public private(set) var phase = Phase.idle
    /// The step being gathered, or the next one while the caller applies the optimizer.
    public private(set) var step = 0

    /// The whole training set: blocks are sent again whenever they change hands.
    private let data: TrainingSamples
    /// `plan.layoutOrder`, computed when the first samples are sent.
    private var layoutOrder: [Int] = []
    /// The shard messages of the key runs being transferred (see `shardMessage`).
    private var shards: [Range<Int>: Message] = [:]
    private var workers: [PeerID: WorkerState] = [:]
    private var departed: Set<PeerID> = []
    /// Worker processes evicted for hanging or answering wrongly, with why: they are not let back in
    /// (a restarted process is a new one and is welcome).
    private var banned: [UInt64: String] = [:]
    private var admissions = 0
    /// The member that computes each block from now on (nil: none yet).
    private var owner: [PeerID?]
    private var ticksSinceStart = 0
    private var ticksSinceHeartbeat = 0
    /// The weights of the step being gathered; released once it completes, so that the caller's
    /// optimizer updates its own copy in place instead of copying it.
    private var weights: [Float] = []
    private var parameterCount = 0
    private var isGathering = false
    /// This step's answers so far, and per block who answered it and who was asked.
    private var pieces: [GradientPiece] = []
    private var answeredBy: [PeerID?]
    private var askedOf: [PeerID?]
    private var slowestAnswerTicks = 0
    private var hasSeenAnswer = false
    /// This step's open audits.
    private var audits: [Audit] = []
    /// This step's answered requests, by who answered: a copy that arrives late is a duplicate.
    private var answeredRequests: Set<AnsweredRequest> = []
    /// Answers audited so far, and those where the two workers disagreed.
    public private(set) var auditedAnswers = 0
    public private(set) var auditDisagreements = 0
    /// The keys of each block's micro-batch in the current step.
    private var microBatches: [ArraySlice<Int>] = []
    private var batches: StepBatches

    public init(configuration: CoordinatorConfiguration, data: TrainingSamples) {
        self.configuration = configuration
        self.data = data
        self.plan = BatchPlan(
            sampleCount: max(1, data.count), batchSize: max(1, configuration.batchSize), seed: configuration.seed,
            microBatchSize: configuration.microBatchSize)
        self.tree = GradientTree(blockCount: plan.blockCount)
        self.batches = StepBatches(plan: plan)
        owner = Array(repeating: nil, count: plan.blockCount)
        answeredBy = Array(repeating: nil, count: plan.blockCount)
        askedOf = Array(repeating: nil, count: plan.blockCount)
    }

    /// The workers holding slots, in slot order, with their shares.
    public var liveWorkers: [WorkerInfo] { members.map(info) }

    /// The workers waiting as spares, first come first.
    public var spareWorkers: [WorkerInfo] { spares.map(info) }

    private var members: [WorkerState] {
        workers.values.filter { $0.slot != nil }.sorted { ($0.slot ?? 0) < ($1.slot ?? 0) }
    }

    private var spares: [WorkerState] {
        workers.values.filter { $0.slot == nil }.sorted { $0.admission < $1.admission }
    }

    private func info(_ worker: WorkerState) -> WorkerInfo {
        WorkerInfo(
            peer: worker.peer, name: worker.name, slot: worker.slot, threads: worker.threads,
            blocks: owner.indices.filter { owner[$0] == worker.peer })
    }

    /// The step timeout in force: configured, or ten times the slowest answer so far (six times the
    /// minimum before the first answer, which may include a worker's start-up).
    private var stepTimeoutTicks: Int {
        if let configured = configuration.stepTimeoutTicks { return configured }
        guard hasSeenAnswer else { return 6 * configuration.minimumStepTimeoutTicks }
        return max(configuration.minimumStepTimeoutTicks, 10 * slowestAnswerTicks)
    }

    /// Ticks after which an unanswered request is sent again: well inside the step timeout, so a lost
    /// message is resent (and answered from the worker's cache) before the worker counts as hung.
    private var requestResendTicks: Int { max(1, min(configuration.resendTicks, stepTimeoutTicks / 2)) }

    /// Samples unacknowledged this long during training cost the worker its place: it would otherwise
    /// hold blocks nobody else may compute.
    private var transferTimeoutTicks: Int { max(stepTimeoutTicks, 6 * configuration.resendTicks) }

    /// Feeds one event; returns the actions to perform, in order.
    public mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorAction] {
        var actions: [CoordinatorAction] = []
        switch event {
        case .start(let initialWeights):
            guard phase == .idle else { break }
            let count = configuration.workerCount
            guard (1...plan.blockCount).contains(count), data.count > 0 else {
                fail(
                    "\(count) workers cannot share the \(plan.blockCount) micro-batches of a "
                        + "batch of \(configuration.batchSize): use 1...\(plan.blockCount) workers or a larger batch",
                    into: &actions)
                break
            }
            guard (1...count).contains(configuration.minimumWorkers) else {
                fail("the minimum of \(configuration.minimumWorkers) workers must be 1...\(count)", into: &actions)
                break
            }
            weights = initialWeights
            parameterCount = initialWeights.count
            step = max(0, configuration.firstStep)
            phase = .joining
            if step >= configuration.totalSteps { beginStep(into: &actions) }
        case .received(let message, let peer):
            receive(message, from: peer, into: &actions)
        case .undecodable(let error, let peer):
            actions.append(.ignored(from: peer, kind: nil, reason: "undecodable message: \(error)"))
        case .tick:
            tick(into: &actions)
        case .refereed(let blocks, let report):
            refereed(blocks: blocks, report: report, into: &actions)
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
        case .stop(let reason, let releaseWorkers):
            guard phase == .joining || phase == .training else { break }
            if releaseWorkers {
                fail("stopped at step \(step): \(reason)", into: &actions)
            } else {
                phase = .failed
                actions.append(.failed(reason: "stopped at step \(step): \(reason)"))
            }
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
            hello(
                from: peer, version: version, name: printableName(name), threads: threads, session: Session(session),
                into: &actions)
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
        case .ready(let firstKey, let sampleCount):
            ready(from: peer, firstKey: firstKey, sampleCount: sampleCount, into: &actions)
        case .gradient(let report):
            gradient(report, from: peer, into: &actions)
        case .goodbye(let reason):
            workerDied(peer, reason: "left: \(reason)", into: &actions)
        case .hello, .welcome, .refuse, .shard, .step, .shutdown:
            actions.append(.ignored(from: peer, kind: message.kind, reason: "not a worker-to-coordinator message"))
        }
    }

    private mutating func hello(
        from peer: PeerID, version: UInt16, name: String, threads: Int, session: Session,
        into actions: inout [CoordinatorAction]
    ) {
        if let known = workers[peer] {
            // One session per socket: a worker that starts over connects a new socket (as `mnist worker`
            // does). A new session on a socket that holds one is ignored, so that hellos cannot make the
            // coordinator send samples again and again to a peer that does not read them.
            if known.session == session { workers[peer]?.silentTicks = 0 }
            let why =
                known.session == session
                ? "duplicate hello (session \(session.value))"
                : "new session \(session.value) on the socket of session \(known.session.value); "
                    + "a worker that starts over must connect a new socket"
            actions.append(.ignored(from: peer, kind: .hello, reason: why))
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
        if let why = banned[session.process] {
            refuse(peer, name: name, reason: "this worker process was \(why); restart it to rejoin", into: &actions)
            return
        }
        // The same process on another socket: the newer session replaces the older one at once, and a
        // hello from an older socket that arrives late is ignored.
        if let earlier = workers.values.first(where: { $0.peer != peer && $0.session.process == session.process }) {
            guard Int16(bitPattern: session.reconnects &- earlier.session.reconnects) > 0 else {
                actions.append(
                    .ignored(from: peer, kind: .hello, reason: "stale hello from an earlier socket of \(info(earlier))")
                )
                return
            }
            workerDied(earlier.peer, reason: "reconnected on a new socket", into: &actions)
        }
        guard phase == .joining || phase == .training else { return }
        let taken = Set(workers.values.compactMap(\.slot))
        let slot = (0..<configuration.workerCount).first { !taken.contains($0) }
        let spareLimit = configuration.maximumSpares ?? configuration.workerCount
        guard slot != nil || spares.count < spareLimit else {
            refuse(
                peer, name: name,
                reason: "cluster is full: all \(configuration.workerCount) worker slots and \(spareLimit) spare "
                    + "places are taken",
                into: &actions)
            return
        }
        admissions += 1
        workers[peer] = WorkerState(
            peer: peer, name: name, threads: threads, slot: slot, session: session, admission: admissions)
        departed.remove(peer)
        if let slot, phase == .joining {
            for block in plan.shardBlocks(worker: slot, of: configuration.workerCount) { owner[block] = peer }
        }
        guard let worker = workers[peer] else { return }
        actions.append(
            .workerJoined(info(worker), joined: members.count, expected: configuration.workerCount, step: step))
        actions.append(
            .send(
                .welcome(workerIndex: slot ?? configuration.workerCount, workerCount: configuration.workerCount),
                to: peer))
        if phase == .training, slot != nil {
            rebalance(why: "\(info(worker)) joined", into: &actions)
        } else if slot != nil, members.count == configuration.workerCount {
            for member in members { sendTransfers(to: member.peer, into: &actions) }  // With audit replicas.
        } else {
            sendTransfers(to: peer, into: &actions)
        }
    }

    /// Sends `peer` the samples of the blocks it owns but does not hold yet, one shard per run of blocks.
    private mutating func sendTransfers(to peer: PeerID, into actions: inout [CoordinatorAction]) {
        guard let worker = workers[peer] else { return }
        let inFlight = Set(worker.transfers.flatMap { Array($0.blocks) })
        // Audit replicas once every slot is taken (the ring of auditors is known only then).
        let ringComplete = phase == .training || members.count == configuration.workerCount
        let audited = ringComplete ? Set(auditedBlocks(by: peer)) : []
        let missing = owner.indices.filter {
            (owner[$0] == peer || audited.contains($0)) && !worker.held.contains($0) && !inFlight.contains($0)
        }
        for run in plan.keyRuns(blocks: missing) {
            workers[peer]?.transfers.append(Transfer(blocks: run.blocks, keys: run.keys))
            actions.append(.send(shardMessage(keys: run.keys), to: peer))
        }
    }

    /// The samples of a run of keys, in key order. Runs in flight are kept, so that a resend (or a
    /// peer that keeps not reading) shares the buffer of the first send instead of taking more memory.
    private mutating func shardMessage(keys: Range<Int>) -> Message {
        if let cached = shards[keys] { return cached }
        let message = makeShardMessage(keys: keys)
        shards[keys] = message
        return message
    }

    /// Forgets the shards no transfer waits for any more.
    private mutating func forgetDeliveredShards() {
        guard !shards.isEmpty else { return }
        let inFlight = Set(workers.values.flatMap { $0.transfers.map(\.keys) })
        shards = shards.filter { inFlight.contains($0.key) }
    }

    private mutating func makeShardMessage(keys: Range<Int>) -> Message {
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

    private mutating func ready(
        from peer: PeerID, firstKey: Int, sampleCount: Int, into actions: inout [CoordinatorAction]
    ) {
        guard let worker = workers[peer] else { return }
        guard let index = worker.transfers.firstIndex(where: { $0.keys.lowerBound == firstKey }) else {
            actions.append(.ignored(from: peer, kind: .ready, reason: "duplicate ready for keys from \(firstKey)"))
            return
        }
        let transfer = worker.transfers[index]
        guard sampleCount == transfer.keys.count else {
            workerDied(
                peer,
                reason: "reported \(sampleCount) samples from key \(firstKey), it was sent \(transfer.keys.count)",
                into: &actions)
            return
        }
        workers[peer]?.transfers.remove(at: index)
        workers[peer]?.held.formUnion(transfer.blocks)
        workers[peer]?.hasAcknowledged = true
        switch phase {
        case .joining:
            // With audits, the replicas too: every answer can be audited from the first step.
            let auditors = auditorOf
            let everyoneReady =
                members.count == configuration.workerCount
                && owner.indices.allSatisfy { block in
                    guard let holder = owner[block], workers[holder]?.held.contains(block) == true else { return false }
                    return auditors[holder].map { workers[$0]?.held.contains(block) == true } ?? true
                }
            guard everyoneReady else { return }
            phase = .training
            actions.append(.trainingStarted(liveWorkers))
            beginStep(into: &actions)
        case .training:
            if isGathering { requestMissing(into: &actions) }
        default:
            break
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
        guard let worker = workers[peer] else { return }
        let blocks = report.pieces.flatMap { Array($0.blocks) }.sorted()
        guard let index = worker.requests.firstIndex(where: { $0.blocks == blocks }) else {
            if !blocks.isEmpty,
                answeredRequests.contains(AnsweredRequest(peer: peer, blocks: blocks))
                    || blocks.allSatisfy({ (0..<plan.blockCount).contains($0) && answeredBy[$0] == peer })
            {
                actions.append(.ignored(from: peer, kind: .gradient, reason: "duplicate gradient for step \(step)"))
            } else {
                let asked = worker.requests.map { describeBlocks($0.blocks) }.joined(separator: "; ")
                workerDied(
                    peer,
                    reason: "evicted: it answered step \(step) for blocks \(describeBlocks(blocks)); it was asked for "
                        + (asked.isEmpty ? "none" : asked),
                    ban: true, into: &actions)
            }
            return
        }
        let request = worker.requests[index]
        if let problem = problem(with: report, owed: request.blocks) {
            workerDied(peer, reason: "evicted: it answered step \(step) wrongly: \(problem)", ban: true, into: &actions)
            return
        }
        workers[peer]?.requests.remove(at: index)
        answeredRequests.insert(AnsweredRequest(peer: peer, blocks: blocks))
        slowestAnswerTicks = max(slowestAnswerTicks, request.ticksOutstanding)
        hasSeenAnswer = true
        if let audit = audits.firstIndex(where: {
            $0.blocks == request.blocks && ($0.owner == peer || $0.auditor == peer)
        }) {
            if audits[audit].owner == peer {
                audits[audit].ownerPieces = report.pieces
            } else {
                audits[audit].auditorPieces = report.pieces
            }
            compareAudit(audit, into: &actions)
            return
        }
        accept(report.pieces, blocks: blocks, from: peer)
        completeStepIfGathered(into: &actions)
    }

    /// Counts `answer` (pieces for `blocks`) towards the step.
    private mutating func accept(_ answer: [GradientPiece], blocks: [Int], from peer: PeerID) {
        pieces.append(contentsOf: answer)
        for block in blocks {
            answeredBy[block] = peer
            askedOf[block] = nil
        }
    }

    // MARK: Audits

    /// The members in slot order, each with the member that audits it (the next one, cyclically).
    private var auditorOf: [PeerID: PeerID] {
        guard configuration.auditFraction > 0 else { return [:] }  // Every step asks: no sorting then.
        let ring = members
        guard ring.count >= 2 else { return [:] }
        var result: [PeerID: PeerID] = [:]
        for (index, member) in ring.enumerated() { result[member.peer] = ring[(index + 1) % ring.count].peer }
        return result
    }

    /// The blocks `peer` holds a replica of as an auditor: those of the member it audits.
    private func auditedBlocks(by peer: PeerID) -> [Int] {
        let audited = auditorOf.filter { $0.value == peer }.map(\.key)
        return owner.indices.filter { block in owner[block].map(audited.contains) ?? false }
    }

    /// Whether `owner`'s answer for this step is audited: a draw from `auditSeed`, the step and its slot.
    private func isAudited(_ owner: WorkerState) -> Bool {
        let z = SplitMix64.derivedSeed(configuration.auditSeed, UInt64(step), UInt64(owner.slot ?? 0))
        return Double(z >> 11) / Double(UInt64(1) << 53) < configuration.auditFraction
    }

    /// Compares an audit whose two answers are in: the same bits count once; different bits go to the
    /// referee.
    private mutating func compareAudit(_ index: Int, into actions: inout [CoordinatorAction]) {
        let audit = audits[index]
        guard let ownerPieces = audit.ownerPieces, let auditorPieces = audit.auditorPieces, !audit.awaitingReferee
        else { return }
        if sameAnswer(ownerPieces, auditorPieces, blocks: audit.blocks) {
            audits.remove(at: index)
            auditedAnswers += 1
            accept(ownerPieces, blocks: audit.blocks, from: audit.owner)
            completeStepIfGathered(into: &actions)
            return
        }
        audits[index].awaitingReferee = true
        auditDisagreements += 1
        let shards = plan.keyRuns(blocks: audit.blocks).compactMap { run -> Shard? in
            guard case .shard(let shard) = shardMessage(keys: run.keys) else { return nil }
            return shard
        }
        actions.append(
            .referee(
                plan.assignment(step: step, blocks: audit.blocks, microBatches: microBatches, weights: weights),
                shards: shards))
    }

    /// Settles a disagreement: whoever differs from the caller's own computation is evicted, and that
    /// computation counts. Without one, both are evicted and the blocks computed again elsewhere.
    private mutating func refereed(blocks: [Int], report: GradientReport?, into actions: inout [CoordinatorAction]) {
        guard phase == .training, isGathering,
            let index = audits.firstIndex(where: { $0.blocks == blocks && $0.awaitingReferee })
        else { return }
        let audit = audits.remove(at: index)
        auditedAnswers += 1
        let reference = report.flatMap { $0.step == step && problem(with: $0, owed: blocks) == nil ? $0.pieces : nil }
        var liars: [PeerID] = []
        for (peer, answer) in [(audit.owner, audit.ownerPieces), (audit.auditor, audit.auditorPieces)] {
            guard let reference, let answer, sameAnswer(answer, reference, blocks: blocks) else {
                liars.append(peer)
                continue
            }
        }
        if let reference {
            accept(reference, blocks: blocks, from: liars.contains(audit.owner) ? audit.auditor : audit.owner)
        }
        for peer in liars {
            guard let worker = workers[peer] else { continue }
            let why =
                reference == nil
                ? "its answer for step \(step) (blocks \(describeBlocks(blocks))) differs from its auditor's and no "
                    + "referee could settle it"
                : "its answer for step \(step) (blocks \(describeBlocks(blocks))) differs from the coordinator's own "
                    + "computation (audit)"
            workerDied(worker.peer, reason: "evicted: \(why)", ban: true, into: &actions)
        }
        if reference == nil, isGathering { requestMissing(into: &actions) }
        completeStepIfGathered(into: &actions)
    }

    /// Ends the audits `peer` takes part in, which has left: the other side's answer counts as an
    /// ordinary one (given, or still to come: its request stands in for the lost worker's).
    /// Returns whether an answer given was counted (the step may be complete now).
    private mutating func endAudits(of peer: PeerID) -> Bool {
        var counted = false
        for audit in audits where audit.owner == peer || audit.auditor == peer {
            let survivor = audit.owner == peer ? audit.auditor : audit.owner
            let answer = audit.owner == peer ? audit.auditorPieces : audit.ownerPieces
            if let answer {
                accept(answer, blocks: audit.blocks, from: survivor)
                counted = true
            } else {
                for block in audit.blocks { askedOf[block] = survivor }
            }
        }
        audits.removeAll { $0.owner == peer || $0.auditor == peer }
        return counted
    }

    /// Whether two answers for `blocks` are the same, bit for bit, once each is added along the tree
    /// into the largest nodes the blocks cover: a worker may send leaves and another sums them first.
    private func sameAnswer(_ a: [GradientPiece], _ b: [GradientPiece], blocks: [Int]) -> Bool {
        guard let left = covering(a, blocks: blocks), let right = covering(b, blocks: blocks) else { return false }
        return Self.samePieces(left, right)
    }

    /// An answer's pieces added into the largest nodes of the tree that `blocks` cover; nil if they
    /// are not disjoint nodes within them.
    private func covering(_ answer: [GradientPiece], blocks: [Int]) -> [GradientPiece]? {
        var result: [GradientPiece] = []
        var start = 0
        let sorted = blocks.sorted()
        while start < sorted.count {
            var end = start
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
            for node in tree.nodes(covering: sorted[start]..<(sorted[end] + 1)) {
                let inside = answer.filter { node.contains($0.blocks.lowerBound) }
                guard let sum = tree.sum(inside, into: node) else { return nil }
                result.append(sum)
            }
            start = end + 1
        }
        return result
    }

    /// Whether two lists of pieces are the same, bit for bit (the order of pieces aside).
    static func samePieces(_ a: [GradientPiece], _ b: [GradientPiece]) -> Bool {
        guard a.count == b.count else { return false }
        let left = a.sorted { $0.blocks.lowerBound < $1.blocks.lowerBound }
        let right = b.sorted { $0.blocks.lowerBound < $1.blocks.lowerBound }
        return zip(left, right).allSatisfy { x, y in
            x.blocks == y.blocks && x.sampleCount == y.sampleCount && x.correctCount == y.correctCount
                && x.lossSum.bitPattern == y.lossSum.bitPattern
                && x.gradient.count == y.gradient.count
                && x.gradient.withUnsafeBytes { xs in y.gradient.withUnsafeBytes { ys in xs.elementsEqual(ys) } }
        }
    }

    /// What is wrong with a report for blocks `owed`, or nil: its pieces must be disjoint nodes of the
    /// tree covering exactly those blocks, each with this step's sample count and a full gradient.
    private func problem(with report: GradientReport, owed: [Int]) -> String? {
        let owedSet = Set(owed)
        for piece in report.pieces {
            guard tree.isNode(piece.blocks) else { return "blocks \(piece.blocks) are not a node of the tree" }
            guard piece.blocks.allSatisfy(owedSet.contains) else {
                return
                    "blocks \(describeBlocks(Array(piece.blocks))) are not among the blocks \(describeBlocks(owed)) it was asked for"
            }
            let expected = piece.blocks.reduce(0) { $0 + microBatches[$1].count }
            guard piece.sampleCount == expected, piece.gradient.count == parameterCount else {
                return "\(piece.gradient.count) gradient values for \(piece.sampleCount) samples of blocks "
                    + "\(piece.blocks); expected \(parameterCount) values for \(expected) samples"
            }
            guard piece.lossSum.isFinite, piece.correctCount <= piece.sampleCount else {
                return "blocks \(piece.blocks) have a loss sum of \(piece.lossSum) and \(piece.correctCount) of "
                    + "\(piece.sampleCount) samples correct"
            }
            if let bad = Self.firstNonFinite(piece.gradient) {
                return "value \(bad) of the gradient of blocks \(piece.blocks) is \(piece.gradient[bad])"
            }
        }
        return nil
    }

    /// The index of the first value that is NaN or infinite, or nil.
    static func firstNonFinite(_ values: [Float]) -> Int? {
        values.withUnsafeBufferPointer { buffer in
            // Finite values stay finite when multiplied by 0; NaN and infinities give NaN.
            var probe: Float = 0
            for value in buffer { probe += value * 0 }
            guard probe.isNaN else { return nil }
            return buffer.firstIndex { !$0.isFinite }
        }
    }

    // MARK: Steps

    private mutating func beginStep(into actions: inout [CoordinatorAction]) {
        guard step < configuration.totalSteps else {
            phase = .finished
            for worker in members + spares {
                actions.append(
                    .send(
                        .shutdown(reason: "training finished after \(configuration.totalSteps) steps"), to: worker.peer)
                )
            }
            actions.append(.finished)
            return
        }
        microBatches = batches.microBatches(step: step)
        isGathering = true
        pieces = []
        answeredBy = Array(repeating: nil, count: plan.blockCount)
        askedOf = Array(repeating: nil, count: plan.blockCount)
        audits = []
        answeredRequests = []
        for peer in workers.keys { workers[peer]?.requests = [] }
        requestMissing(into: &actions)
    }

    /// Asks for every block of the step that is neither answered nor asked for: of its owner when the
    /// owner holds its samples, else of another member that holds them; a block nobody holds waits for
    /// its samples to reach its owner (`ready`).
    private mutating func requestMissing(into actions: inout [CoordinatorAction]) {
        var asks: [PeerID: [Int]] = [:]
        let holders = members
        for block in 0..<plan.blockCount where answeredBy[block] == nil && askedOf[block] == nil {
            let computer: PeerID?
            if let owner = owner[block], workers[owner]?.held.contains(block) == true {
                computer = owner
            } else {
                computer = holders.first { $0.held.contains(block) }?.peer
            }
            guard let computer else { continue }
            asks[computer, default: []].append(block)
            askedOf[block] = computer
        }
        let auditors = auditorOf
        for worker in holders {
            guard let blocks = asks[worker.peer] else { continue }
            workers[worker.peer]?.requests.append(Request(blocks: blocks))
            actions.append(.send(stepMessage(blocks: blocks), to: worker.peer))
            // The same request to its auditor, now and then: the owner cannot tell an audited step.
            guard let auditor = auditors[worker.peer], !audits.contains(where: { $0.owner == worker.peer }),
                let replica = workers[auditor], blocks.allSatisfy(replica.held.contains), isAudited(worker)
            else { continue }
            audits.append(Audit(blocks: blocks, owner: worker.peer, auditor: auditor))
            workers[auditor]?.requests.append(Request(blocks: blocks))
            actions.append(.send(stepMessage(blocks: blocks), to: auditor))
        }
    }

    private func stepMessage(blocks: [Int]) -> Message {
        .step(plan.assignment(step: step, blocks: blocks, microBatches: microBatches, weights: weights))
    }

    private mutating func completeStepIfGathered(into actions: inout [CoordinatorAction]) {
        guard phase == .training, isGathering, answeredBy.allSatisfy({ $0 != nil }) else { return }
        var contributors: [PeerID] = []
        for case let peer? in answeredBy where !contributors.contains(peer) { contributors.append(peer) }
        let result = StepResult(
            step: step, epoch: plan.epoch(ofStep: step), reports: [GradientReport(step: step, pieces: pieces)],
            tree: tree, parameterCount: parameterCount, contributors: contributors)
        if let bad = Self.firstNonFinite(result.averagedGradient) {
            // Every piece was finite, so their sum overflowed: never apply it.
            fail(
                "the averaged gradient of step \(step) is not finite (value \(bad) is "
                    + "\(result.averagedGradient[bad])); the weights before the step are kept",
                into: &actions)
            return
        }
        isGathering = false
        pieces = []
        audits = []
        weights = []
        for peer in workers.keys { workers[peer]?.requests = [] }
        actions.append(.stepCompleted(result))
    }

    // MARK: Membership

    /// Gives every block without an owner to a member, then evens out the shares (at most one block
    /// apart), preferring moves that need no samples sent; sends the samples that must move.
    private mutating func rebalance(why: String, into actions: inout [CoordinatorAction]) {
        let holders = members
        guard !holders.isEmpty else { return }
        let before = owner
        func count(_ peer: PeerID) -> Int { owner.reduce(0) { $0 + ($1 == peer ? 1 : 0) } }
        func adjacent(_ block: Int, _ peer: PeerID) -> Bool {
            (block > 0 && owner[block - 1] == peer) || (block + 1 < owner.count && owner[block + 1] == peer)
        }
        for block in owner.indices where owner[block] == nil {
            let best = holders.min { a, b in
                let left = (count(a.peer), a.held.contains(block) ? 0 : 1, adjacent(block, a.peer) ? 0 : 1, a.slot ?? 0)
                let right = (
                    count(b.peer), b.held.contains(block) ? 0 : 1, adjacent(block, b.peer) ? 0 : 1, b.slot ?? 0
                )
                return left < right
            }
            owner[block] = best?.peer
        }
        while true {
            let counts = holders.map { ($0, count($0.peer)) }
            guard let most = counts.max(by: { $0.1 < $1.1 }), let least = counts.min(by: { $0.1 < $1.1 }),
                most.1 - least.1 > 1
            else { break }
            let candidates = owner.indices.filter { owner[$0] == most.0.peer }
            let block =
                candidates.first { least.0.held.contains($0) } ?? candidates.first { adjacent($0, least.0.peer) }
                ?? candidates.last
            guard let block else { break }
            owner[block] = least.0.peer
        }
        if owner != before {
            actions.append(.sharesChanged(liveWorkers, step: step, why: why))
        }
        for worker in holders { sendTransfers(to: worker.peer, into: &actions) }
    }

    // MARK: Time and death

    private mutating func tick(into actions: inout [CoordinatorAction]) {
        guard phase == .joining || phase == .training else { return }
        forgetDeliveredShards()
        ticksSinceStart += 1
        ticksSinceHeartbeat += 1
        let sendHeartbeat = ticksSinceHeartbeat >= configuration.heartbeatIntervalTicks
        if sendHeartbeat { ticksSinceHeartbeat = 0 }
        let seconds = configuration.tickSecondsForMessages
        for worker in members + spares {
            let peer = worker.peer
            guard workers[peer] != nil, phase == .joining || phase == .training else { continue }
            workers[peer]?.silentTicks += 1
            if worker.silentTicks + 1 > configuration.livenessTicks {
                workerDied(
                    peer,
                    reason: "silent for \(describeTicks(worker.silentTicks + 1, seconds)) "
                        + "(liveness window \(describeTicks(configuration.livenessTicks, seconds)))",
                    into: &actions)
                continue
            }
            if sendHeartbeat { actions.append(.send(.heartbeat, to: peer)) }
            // A member that does not acknowledge its samples in time loses its slot, also while joining:
            // a peer that never completes the join cannot hold a slot that a real worker needs.
            if let late = worker.transfers.first(where: { $0.ticksOutstanding >= transferTimeoutTicks }) {
                // Evicted (and banned) while training; while joining it only gives its slot up.
                let training = phase == .training
                workerDied(
                    peer,
                    reason: (training ? "evicted: it" : "gave its slot up: it")
                        + " did not acknowledge the samples of blocks \(describeBlocks(Array(late.blocks))) "
                        + "within \(describeTicks(transferTimeoutTicks, seconds))",
                    ban: training, into: &actions)
                continue
            }
            for index in worker.transfers.indices {
                workers[peer]?.transfers[index].ticksOutstanding += 1
                workers[peer]?.transfers[index].ticksSinceSent += 1
                guard worker.transfers[index].ticksSinceSent + 1 >= configuration.resendTicks else { continue }
                workers[peer]?.transfers[index].ticksSinceSent = 0
                // The welcome may be what was lost: a worker ignores samples before its welcome.
                if !worker.hasAcknowledged {
                    actions.append(
                        .send(
                            .welcome(
                                workerIndex: worker.slot ?? configuration.workerCount,
                                workerCount: configuration.workerCount), to: peer))
                }
                actions.append(.send(shardMessage(keys: worker.transfers[index].keys), to: peer))
            }
            guard phase == .training, isGathering else { continue }
            for index in worker.requests.indices {
                workers[peer]?.requests[index].ticksOutstanding += 1
                workers[peer]?.requests[index].ticksSinceSent += 1
            }
            guard let requests = workers[peer]?.requests else { continue }
            if let late = requests.first(where: { $0.ticksOutstanding > stepTimeoutTicks }) {
                workerDied(
                    peer,
                    reason: "evicted: no answer to step \(step) (blocks \(describeBlocks(late.blocks))) within "
                        + "\(describeTicks(stepTimeoutTicks, seconds)) (step timeout), though its heartbeats arrived",
                    ban: true, into: &actions)
                continue
            }
            for (index, request) in requests.enumerated() where request.ticksSinceSent >= requestResendTicks {
                workers[peer]?.requests[index].ticksSinceSent = 0
                actions.append(.send(stepMessage(blocks: request.blocks), to: peer))
            }
        }
        if phase == .training && members.count < configuration.minimumWorkers {
            fail(
                "\(members.count) worker\(members.count == 1 ? "" : "s") left at step \(step), fewer than the minimum "
                    + "of \(configuration.minimumWorkers)",
                into: &actions)
        }
        if phase == .joining && ticksSinceStart > configuration.joinTimeoutTicks {
            let joined = members.map { worker in
                "\(info(worker))\(worker.transfers.isEmpty ? " ready" : " still loading its shard")"
            }
            fail(
                "only \(members.count) of \(configuration.workerCount) workers joined and got ready within "
                    + "\(describeTicks(configuration.joinTimeoutTicks, seconds)) (joined: \(joined.isEmpty ? "none" : joined.joined(separator: ", ")))",
                into: &actions)
        }
    }

    /// Declares `peer` dead; with `ban`, its process may not come back (`banned`).
    private mutating func workerDied(
        _ peer: PeerID, reason: String, ban: Bool = false, into actions: inout [CoordinatorAction]
    ) {
        guard let worker = workers[peer] else { return }
        if ban { banned[worker.session.process] = "\(reason) at step \(step)" }
        let described = info(worker)
        workers.removeValue(forKey: peer)
        departed.insert(peer)
        let countedAuditedAnswer = endAudits(of: peer)
        actions.append(.workerDied(described, step: step, reason: reason))
        for block in owner.indices where owner[block] == peer { owner[block] = nil }
        for block in askedOf.indices where askedOf[block] == peer { askedOf[block] = nil }
        guard let slot = worker.slot, phase == .joining || phase == .training else { return }
        if let spare = spares.first {
            workers[spare.peer]?.slot = slot
            let blocks =
                phase == .joining
                ? Array(plan.shardBlocks(worker: slot, of: configuration.workerCount)) : described.blocks
            for block in blocks { owner[block] = spare.peer }
            actions.append(.send(.welcome(workerIndex: slot, workerCount: configuration.workerCount), to: spare.peer))
            if let promoted = workers[spare.peer] {
                actions.append(
                    .workerJoined(
                        info(promoted), joined: members.count, expected: configuration.workerCount, step: step))
            }
        }
        guard phase == .training else {  // While joining, the slot is the spare's, or free for the next hello.
            for member in members { sendTransfers(to: member.peer, into: &actions) }
            return
        }
        rebalance(why: "\(described) died", into: &actions)
        if isGathering { requestMissing(into: &actions) }
        if countedAuditedAnswer { completeStepIfGathered(into: &actions) }
    }

    private mutating func fail(_ reason: String, into actions: inout [CoordinatorAction]) {
        for worker in members + spares {
            actions.append(.send(.shutdown(reason: "coordinator stopping: \(reason)"), to: worker.peer))
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
