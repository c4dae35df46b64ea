// Scripted, single-scenario tests of the coordinator and worker state machines, event by event.
// The randomised many-seed runs live in ClusterSimulationTests.swift.
import XCTest
@testable import DataParallel

final class CoordinatorTests: XCTestCase {
    let alice = PeerID("alice"), bob = PeerID("bob"), mallory = PeerID("mallory")

    func makeCoordinator(
        workers: Int = 2, steps: Int = 3, configure: (inout CoordinatorConfiguration) -> Void = { _ in }
    )
        -> Coordinator
    {
        var configuration = CoordinatorConfiguration(
            workerCount: workers, batchSize: 4, totalSteps: steps, seed: 9,
            settings: [42])
        configuration.microBatchSize = 2  // Two blocks of four samples.
        configuration.livenessTicks = 5
        configuration.heartbeatIntervalTicks = 2
        configuration.joinTimeoutTicks = 20
        configure(&configuration)
        let data = TrainingSamples(pixelsPerImage: 2, images: Array(0..<16), labels: [0, 1, 2, 3, 4, 5, 6, 7])
        var coordinator = Coordinator(configuration: configuration, data: data)
        XCTAssertEqual(coordinator.handle(.start(initialWeights: [0, 0, 0])), [])
        return coordinator
    }

    func hello(_ name: String, version: UInt16 = ProtocolInfo.version, session: UInt64 = 1) -> Message {
        .hello(protocolVersion: version, workerName: name, threads: 2, session: session)
    }

    /// Brings a coordinator with alice and bob to the first step.
    func makeTrainingCoordinator(configure: (inout CoordinatorConfiguration) -> Void = { _ in }) -> Coordinator {
        var coordinator = makeCoordinator(configure: configure)
        _ = coordinator.handle(.received(hello("a"), from: alice))
        _ = coordinator.handle(.received(hello("b", session: 2 << 16 | 1), from: bob))
        _ = coordinator.handle(.received(.ready(firstKey: 0, sampleCount: 4), from: alice))
        let actions = coordinator.handle(.received(.ready(firstKey: 4, sampleCount: 4), from: bob))
        XCTAssertEqual(coordinator.phase, .training)
        XCTAssertEqual(actions.filter { if case .send(.step, _) = $0 { return true } else { return false } }.count, 2)
        return coordinator
    }

    func assignment(_ actions: [CoordinatorAction], to peer: PeerID) -> StepAssignment? {
        for case .send(.step(let assignment), let to) in actions where to == peer { return assignment }
        return nil
    }

    func testJoinSendsWelcomeAndShardThenStartsTraining() {
        var coordinator = makeCoordinator()
        let actions = coordinator.handle(.received(hello("a"), from: alice))
        XCTAssertEqual(actions.count, 3)
        XCTAssertEqual(actions[1], .send(.welcome(workerIndex: 0, workerCount: 2), to: alice))
        // The first block: the samples of keys 0..<4, in key order (sample s has pixels 2s, 2s+1 and label s).
        let samples = coordinator.plan.layoutOrder[0..<4]
        XCTAssertEqual(
            actions[2],
            .send(
                .shard(
                    Shard(
                        pixelsPerImage: 2, images: samples.flatMap { [UInt8(2 * $0), UInt8(2 * $0 + 1)] },
                        labels: samples.map { UInt8($0) }, settings: [42], firstKey: 0)), to: alice))
        XCTAssertEqual(coordinator.phase, .joining)
    }

    /// A worker's name reaches the logs cut to 64 characters, with control and format characters
    /// escaped: no peer can forge a log line or send escape sequences to a terminal.
    func testWorkerNamesCannotForgeLogLines() {
        var coordinator = makeCoordinator()
        let forged = "evil\n2026-12-06 error: forged\u{1B}[31m\u{202E}" + String(repeating: "x", count: 100)
        let actions = coordinator.handle(.received(hello(forged), from: alice))
        guard case .workerJoined(let info, _, _, _)? = actions.first else { return XCTFail("\(actions)") }
        XCTAssertTrue(info.name.hasPrefix(#"evil\n2026-12-06 error: forged\u{1B}[31m\u{202E}xxx"#), info.name)
        XCTAssertEqual(info.name.filter { $0 == "x" }.count, 64 - 35, "cut to 64 characters: \(info.name)")
        XCTAssertTrue(info.name.hasSuffix("…"), info.name)
        XCTAssertFalse(info.name.contains { $0.isNewline || $0.unicodeScalars.contains { $0.value == 0x1B } })
        XCTAssertEqual(printableName("plain-name_1 ü"), "plain-name_1 ü", "ordinary names are left alone")
    }

    func testVersionMismatchIsRefusedAndReported() {
        var coordinator = makeCoordinator()
        let actions = coordinator.handle(.received(hello("old", version: 0), from: alice))
        guard case .workerRefused(alice, "old", let reason) = actions.first else { return XCTFail("\(actions)") }
        XCTAssertTrue(reason.contains("version 0") && reason.contains("version \(ProtocolInfo.version)"), reason)
        XCTAssertEqual(actions.last, .send(.refuse(protocolVersion: ProtocolInfo.version, reason: reason), to: alice))
        XCTAssertTrue(coordinator.liveWorkers.isEmpty)
    }

    /// One session per socket: a hello with a new session on a socket that holds one is ignored and
    /// costs no samples (a peer repeating hellos with new sessions used to get a shard per hello).
    func testDuplicateHellosAndNewSessionsOnTheSameSocketSendNothing() {
        var coordinator = makeTrainingCoordinator()
        let duplicate = coordinator.handle(.received(hello("a"), from: alice))
        XCTAssertEqual(duplicate, [.ignored(from: alice, kind: .hello, reason: "duplicate hello (session 1)")])
        for session in 2...50 {
            let restarted = coordinator.handle(.received(hello("a", session: UInt64(session)), from: alice))
            XCTAssertEqual(restarted.count, 1, "\(restarted)")
            guard case .ignored(alice, .hello, let reason) = restarted.first else { return XCTFail("\(restarted)") }
            XCTAssertTrue(reason.contains("new socket"), reason)
        }
        XCTAssertEqual(coordinator.phase, .training)
        XCTAssertEqual(coordinator.liveWorkers.map(\.peer), [alice, bob])
    }

    /// A member that never acknowledges its samples while the workers join loses its slot to a spare
    /// after the transfer timeout: a squatter cannot hold a slot that a real worker needs.
    func testAMemberThatNeverCompletesTheJoinLosesItsSlotToASpare() {
        var coordinator = makeCoordinator(workers: 1) {
            $0.resendTicks = 3
            $0.minimumStepTimeoutTicks = 2  // A transfer timeout of max(6 x 2, 6 x 3) = 18 ticks.
        }
        let squatter = PeerID([9]), worker = PeerID([10])
        _ = coordinator.handle(.received(hello("squatter", session: 7 << 16), from: squatter))
        _ = coordinator.handle(.received(hello("real", session: 8 << 16), from: worker))
        XCTAssertEqual(coordinator.spareWorkers.map(\.peer), [worker])
        var promoted: [CoordinatorAction] = []
        for _ in 0..<30 {
            _ = coordinator.handle(.received(.heartbeat, from: squatter))
            _ = coordinator.handle(.received(.heartbeat, from: worker))
            let actions = coordinator.handle(.tick)
            if actions.contains(where: {
                if case .workerDied(let info, _, _) = $0 { info.peer == squatter } else { false }
            }) {
                promoted = actions
                break
            }
        }
        XCTAssertTrue(promoted.contains(.send(.welcome(workerIndex: 0, workerCount: 1), to: worker)), "\(promoted)")
        XCTAssertTrue(promoted.contains { if case .send(.shard, worker) = $0 { true } else { false } }, "\(promoted)")
        XCTAssertEqual(coordinator.liveWorkers.map(\.peer), [worker])
        _ = coordinator.handle(.received(.ready(firstKey: 0, sampleCount: 8), from: worker))
        XCTAssertEqual(coordinator.phase, .training)
    }

    func testAnEarlierSocketOfTheSameProcessNeverHoldsASlot() {
        var coordinator = makeCoordinator()
        let process: UInt64 = 77 << 16
        _ = coordinator.handle(.received(hello("a", session: process | 1), from: alice))
        // The same process reconnected on a new socket (mallory's id): the older session is replaced at once.
        let newer = coordinator.handle(.received(hello("a", session: process | 2), from: mallory))
        XCTAssertTrue(
            newer.contains { if case .workerDied(let info, _, _) = $0 { info.peer == self.alice } else { false } })
        XCTAssertEqual(coordinator.liveWorkers.map(\.peer), [mallory])
        // A hello from the older socket that arrives late is ignored.
        let late = coordinator.handle(.received(hello("a", session: process | 1), from: bob))
        XCTAssertTrue(ignored(late), "\(late)")
        XCTAssertEqual(coordinator.liveWorkers.map(\.peer), [mallory])
    }

    func testNewcomersToAFullClusterWaitAsSparesUpToTheLimit() {
        var coordinator = makeTrainingCoordinator { $0.maximumSpares = 1 }
        let spare = coordinator.handle(.received(hello("late", session: 3 << 16 | 1), from: mallory))
        XCTAssertTrue(
            spare.contains { if case .workerJoined(let info, 2, 2, 0) = $0 { info.slot == nil } else { false } })
        XCTAssertTrue(spare.contains(.send(.welcome(workerIndex: 2, workerCount: 2), to: mallory)))
        XCTAssertFalse(
            spare.contains { if case .send(.shard, _) = $0 { true } else { false } }, "a spare holds nothing")
        let refused = coordinator.handle(.received(hello("later", session: 4 << 16 | 1), from: PeerID("eve")))
        XCTAssertTrue(
            refused.contains {
                if case .workerRefused(_, _, let reason) = $0 { reason.contains("full") } else { false }
            })
        // A member leaves: the spare takes its slot and its blocks.
        let left = coordinator.handle(.received(.goodbye(reason: "ctrl-c"), from: bob))
        XCTAssertEqual(coordinator.liveWorkers.map(\.peer), [alice, mallory])
        XCTAssertEqual(coordinator.liveWorkers.last?.blocks, [1])
        XCTAssertTrue(left.contains(.send(.welcome(workerIndex: 1, workerCount: 2), to: mallory)))
        let samples = left.compactMap { action -> Shard? in
            if case .send(.shard(let shard), self.mallory) = action { return shard } else { return nil }
        }
        XCTAssertEqual(samples.map(\.firstKey), [4])
        // Once they arrive, the spare is asked for the micro-batch bob owed.
        let asked = coordinator.handle(.received(.ready(firstKey: 4, sampleCount: 4), from: mallory))
        XCTAssertEqual(assignment(asked, to: mallory)?.blocks, [1])
    }

    func testJoinTimeoutNamesWhoJoined() {
        var coordinator = makeCoordinator()
        _ = coordinator.handle(.received(hello("a"), from: alice))
        var failure: String?
        for _ in 0..<21 {
            _ = coordinator.handle(.received(.heartbeat, from: alice))
            for case .failed(let reason) in coordinator.handle(.tick) { failure = reason }
        }
        XCTAssertEqual(coordinator.phase, .failed)
        XCTAssertTrue(
            failure?.contains("only 1 of 2 workers") == true && failure?.contains("\"a\"") == true, "\(failure ?? "")")
    }

    func testStaleDuplicateAndUnknownGradientsAreIgnored() throws {
        var coordinator = makeTrainingCoordinator()
        let parameters = 3
        func report(step: Int, block: Int, samples: Int, value: Float) -> Message {
            .gradient(
                GradientReport(
                    step: step,
                    pieces: [
                        GradientPiece(
                            blocks: block..<(block + 1), sampleCount: samples, correctCount: 0, lossSum: 1,
                            gradient: Array(repeating: value, count: parameters))
                    ]))
        }
        // Find out how many samples each worker was assigned in step 0 by replaying a fresh coordinator.
        var fresh = makeCoordinator()
        _ = fresh.handle(.received(hello("a"), from: alice))
        _ = fresh.handle(.received(hello("b", session: 2 << 16 | 1), from: bob))
        _ = fresh.handle(.received(.ready(firstKey: 0, sampleCount: 4), from: alice))
        let start = fresh.handle(.received(.ready(firstKey: 4, sampleCount: 4), from: bob))
        let aliceCount = try XCTUnwrap(assignment(start, to: alice)).sampleKeys.count
        let bobCount = try XCTUnwrap(assignment(start, to: bob)).sampleKeys.count
        XCTAssertEqual(aliceCount + bobCount, 4)

        XCTAssertTrue(
            ignored(
                coordinator.handle(.received(report(step: 7, block: 0, samples: aliceCount, value: 100), from: alice))))
        XCTAssertTrue(
            ignored(coordinator.handle(.received(report(step: 0, block: 0, samples: 1, value: 100), from: mallory))))
        XCTAssertEqual(
            coordinator.handle(.received(report(step: 0, block: 0, samples: aliceCount, value: 1), from: alice)), [])
        XCTAssertTrue(
            ignored(
                coordinator.handle(.received(report(step: 0, block: 0, samples: aliceCount, value: 100), from: alice))))
        let done = coordinator.handle(.received(report(step: 0, block: 1, samples: bobCount, value: 3), from: bob))
        guard case .stepCompleted(let result) = done.first else { return XCTFail("\(done)") }
        XCTAssertEqual(result.contributors, [alice, bob])
        XCTAssertEqual(result.sampleCount, 4)
        XCTAssertEqual(result.averagedGradient, Array(repeating: 1, count: parameters), "(1 + 3) / 4 samples")
        // After completion and before the next step, a late duplicate is stale.
        XCTAssertTrue(
            ignored(coordinator.handle(.received(report(step: 0, block: 1, samples: bobCount, value: 3), from: bob))))
        let next = coordinator.handle(.weightsUpdated([1, 2, 3]))
        XCTAssertEqual(assignment(next, to: alice)?.step, 1)
        XCTAssertEqual(assignment(next, to: alice)?.weights, [1, 2, 3])
    }

    func testSilentWorkerIsDeclaredDeadWithinTheLivenessWindowAndItsWorkMoves() {
        var coordinator = makeTrainingCoordinator()
        var died: (WorkerInfo, Int, String)?
        var actions: [CoordinatorAction] = []
        for tick in 1...6 {
            _ = coordinator.handle(.received(.heartbeat, from: alice))
            actions = coordinator.handle(.tick)
            for case .workerDied(let info, let step, let reason) in actions { died = (info, step, reason) }
            if tick <= 5 { XCTAssertNil(died, "tick \(tick) is inside the window") }
        }
        XCTAssertEqual(died?.0.peer, bob)
        XCTAssertEqual(died?.1, 0)
        XCTAssertEqual(coordinator.phase, .training)
        XCTAssertEqual(coordinator.liveWorkers.map(\.blocks), [[0, 1]], "alice owns both blocks now")
        XCTAssertTrue(
            actions.contains { if case .sharesChanged(_, 0, let why) = $0 { why.contains("\"b\"") } else { false } })
        let samples = actions.compactMap { action -> Shard? in
            if case .send(.shard(let shard), self.alice) = action { return shard } else { return nil }
        }
        XCTAssertEqual(samples.map(\.firstKey), [4], "bob's block is sent to alice")
        let asked = coordinator.handle(.received(.ready(firstKey: 4, sampleCount: 4), from: alice))
        XCTAssertEqual(assignment(asked, to: alice)?.blocks, [1], "and she computes what bob owed")
        XCTAssertEqual(assignment(asked, to: alice)?.step, 0)
    }

    func testFewerWorkersThanTheMinimumFailTheRun() {
        var coordinator = makeTrainingCoordinator { $0.minimumWorkers = 2 }
        _ = coordinator.handle(.received(.goodbye(reason: "ctrl-c"), from: bob))
        let actions = coordinator.handle(.tick)
        guard case .failed(let reason)? = actions.last else { return XCTFail("\(actions)") }
        XCTAssertTrue(reason.contains("1 worker left at step 0") && reason.contains("minimum of 2"), reason)
        XCTAssertTrue(actions.contains { if case .send(.shutdown, self.alice) = $0 { true } else { false } })
    }

    /// A worker that heartbeats but never acknowledges the samples moved to it would hold blocks nobody
    /// else may compute: it is evicted, and the run does not stall for ever.
    func testAWorkerThatNeverAcknowledgesItsSamplesIsEvicted() {
        var coordinator = makeTrainingCoordinator()
        _ = coordinator.handle(.received(.goodbye(reason: "ctrl-c"), from: bob))
        var evicted: String?
        for _ in 0..<700 where evicted == nil {
            _ = coordinator.handle(.received(.heartbeat, from: alice))
            for case .workerDied(let info, _, let reason) in coordinator.handle(.tick) where info.peer == alice {
                evicted = reason
            }
        }
        XCTAssertTrue(evicted?.contains("did not acknowledge the samples of blocks 1") == true, "\(evicted ?? "")")
    }

    func testAWorkerThatHeartbeatsButNeverAnswersIsEvicted() {
        var coordinator = makeTrainingCoordinator { $0.stepTimeoutTicks = 8 }
        var evicted: String?
        for _ in 1...9 {
            _ = coordinator.handle(.received(.heartbeat, from: alice))
            _ = coordinator.handle(.received(.heartbeat, from: bob))
            for case .workerDied(let info, _, let reason) in coordinator.handle(.tick) where info.peer == bob {
                evicted = reason
            }
        }
        XCTAssertTrue(
            evicted?.contains("evicted") == true && evicted?.contains("step timeout") == true, "\(evicted ?? "")")
    }

    func testFinishesAfterTheLastStep() {
        var coordinator = makeCoordinator(workers: 1, steps: 1)
        _ = coordinator.handle(.received(hello("a"), from: alice))
        let start = coordinator.handle(.received(.ready(firstKey: 0, sampleCount: 8), from: alice))
        let count = assignment(start, to: alice)?.sampleKeys.count ?? -1
        _ = coordinator.handle(
            .received(
                .gradient(
                    GradientReport(
                        step: 0,
                        pieces: [
                            GradientPiece(
                                blocks: 0..<2, sampleCount: count, correctCount: 0, lossSum: 0, gradient: [0, 0, 0])
                        ])), from: alice))
        let end = coordinator.handle(.weightsUpdated([0, 0, 0]))
        XCTAssertEqual(end.last, .finished)
        XCTAssertTrue(end.contains { if case .send(.shutdown, alice) = $0 { return true } else { return false } })
    }

    private func ignored(_ actions: [CoordinatorAction]) -> Bool {
        actions.count == 1 && { if case .ignored = actions[0] { return true } else { return false } }()
    }
}

final class WorkerTests: XCTestCase {
    func makeWorker(version: UInt16 = ProtocolInfo.version) -> Worker {
        var configuration = WorkerConfiguration(name: "w", threads: 4)
        configuration.livenessTicks = 4
        configuration.heartbeatIntervalTicks = 2
        configuration.initialBackoffTicks = 2
        configuration.maximumBackoffTicks = 5
        configuration.maximumReconnectAttempts = 3
        configuration.protocolVersion = version
        return Worker(configuration: configuration)
    }

    func testHelloCarriesTheVersionAndRefusalFailsWithBothVersions() {
        var worker = makeWorker(version: 7)
        XCTAssertEqual(
            worker.handle(.start), [.send(.hello(protocolVersion: 7, workerName: "w", threads: 4, session: 0))])
        let actions = worker.handle(.received(.refuse(protocolVersion: 1, reason: "protocol version mismatch")))
        guard case .failed(let reason) = actions.first else { return XCTFail("\(actions)") }
        XCTAssertTrue(
            reason.contains("mismatch") && reason.contains("version 1") && reason.contains("worker 7"), reason)
        XCTAssertEqual(worker.phase, .failed)
    }

    func makeReadyWorker() -> Worker {
        var worker = makeWorker()
        _ = worker.handle(.start)
        XCTAssertEqual(
            worker.handle(.received(.welcome(workerIndex: 0, workerCount: 1))),
            [.welcomed(workerIndex: 0, workerCount: 1)])
        let shard = Shard(pixelsPerImage: 1, images: [1, 2, 3], labels: [0, 1, 2], settings: [])
        XCTAssertEqual(
            worker.handle(.received(.shard(shard))),
            [.shardReceived(shard), .send(.ready(firstKey: 0, sampleCount: 3))])
        return worker
    }

    func testAnswersStepsOnceAndResendsALostAnswer() {
        var worker = makeReadyWorker()
        let assignment = StepAssignment(
            step: 0, epoch: 0, weights: [1], sampleKeys: [2, 0], microBatches: [MicroBatch(block: 0, sampleCount: 2)]
        )
        XCTAssertEqual(worker.handle(.received(.step(assignment))), [.computeGradient(assignment)])
        XCTAssertEqual(worker.handle(.received(.step(assignment))).count, 1, "in progress: ignored")
        let report = GradientReport(
            step: 0,
            pieces: [GradientPiece(blocks: 0..<1, sampleCount: 2, correctCount: 1, lossSum: 1, gradient: [5])])
        XCTAssertEqual(worker.handle(.gradientComputed(report)), [.send(.gradient(report))])
        XCTAssertEqual(worker.handle(.received(.step(assignment))), [.send(.gradient(report))], "resent")
        let bad = StepAssignment(
            step: 1, epoch: 0, weights: [1], sampleKeys: [3], microBatches: [MicroBatch(block: 0, sampleCount: 1)])
        let actions = worker.handle(.received(.step(bad)))
        XCTAssertEqual(worker.phase, .failed, "index 3 is outside a 3-sample shard: \(actions)")
    }

    func testSilentCoordinatorTriggersReconnectWithBackoffThenGivesUp() {
        var worker = makeReadyWorker()
        var log: [WorkerAction] = []
        for _ in 0..<200 { log += worker.handle(.tick) }
        let lost = log.compactMap { action -> Int? in
            if case .coordinatorLost(_, let backoff, _) = action { return backoff } else { return nil }
        }
        XCTAssertEqual(lost, [2, 4, 5], "doubling backoff, capped at the maximum")
        XCTAssertEqual(log.filter { if case .reconnect = $0 { return true } else { return false } }.count, 3)
        let sessions = log.compactMap { action -> UInt64? in
            if case .send(.hello(_, _, _, let session)) = action { return session } else { return nil }
        }
        XCTAssertEqual(sessions, [1, 2, 3], "each reconnect is a new session")
        guard case .failed(let reason) = log.last else { return XCTFail("\(log)") }
        XCTAssertTrue(reason.contains("coordinator silent"), reason)
    }

    /// Reconnecting goes on, with backoff, until no message has come for the reconnect timeout.
    func testReconnectingStopsAtTheReconnectTimeout() {
        var configuration = WorkerConfiguration(name: "w", threads: 1)
        configuration.livenessTicks = 4
        configuration.initialBackoffTicks = 2
        configuration.maximumBackoffTicks = 5
        configuration.reconnectTimeoutTicks = 60
        configuration.maximumReconnectAttempts = .max
        var worker = Worker(configuration: configuration)
        _ = worker.handle(.start)
        var failedAt: Int?
        var reconnects = 0
        for tick in 1...300 where failedAt == nil {
            for action in worker.handle(.tick) {
                if case .reconnect = action { reconnects += 1 }
                if case .failed(let reason) = action {
                    failedAt = tick
                    XCTAssertTrue(reason.contains("reconnect timeout 60 ticks"), reason)
                }
            }
        }
        let tick = try? XCTUnwrap(failedAt)
        XCTAssertGreaterThanOrEqual(tick ?? 0, 60, "gave up before the timeout")
        XCTAssertLessThanOrEqual(tick ?? .max, 60 + 5 + 5, "a window and a backoff at most past the timeout")
        XCTAssertGreaterThan(reconnects, 5, "it kept reconnecting, with backoff, until then")
    }

    /// The coordinator's liveness window from its settings stretches the worker's (4 ticks here), so
    /// a coordinator that pauses longer than the worker's own window is not given up on; a smaller
    /// one does not shrink it.
    func testTheCoordinatorsLivenessWindowAppliesWhenLonger() {
        func ticksUntilLost(_ window: Int?) -> Int {
            var worker = makeReadyWorker()
            if let window { XCTAssertEqual(worker.handle(.coordinatorLivenessWindow(ticks: window)), []) }
            for tick in 1...100 {
                if worker.handle(.tick).contains(where: { if case .coordinatorLost = $0 { true } else { false } }) {
                    return tick
                }
            }
            return -1
        }
        XCTAssertEqual(ticksUntilLost(nil), 5, "the worker's own window: lost on the 5th silent tick")
        XCTAssertEqual(ticksUntilLost(30), 31)
        XCTAssertEqual(ticksUntilLost(2), 5, "a smaller window from the coordinator does not shrink it")
    }

    func testHeartbeatsFlowAndAnyTrafficKeepsTheCoordinatorAlive() {
        var worker = makeReadyWorker()
        var heartbeats = 0
        for _ in 0..<20 {
            heartbeats += worker.handle(.tick).filter { $0 == .send(.heartbeat) }.count
            _ = worker.handle(.received(.heartbeat))
        }
        XCTAssertEqual(heartbeats, 10)
        XCTAssertEqual(worker.phase, .ready)
    }

    func testShutdownFinishesAndAbortSaysGoodbye() {
        var worker = makeReadyWorker()
        XCTAssertEqual(worker.handle(.received(.shutdown(reason: "done"))), [.finished(reason: "done")])
        var other = makeReadyWorker()
        XCTAssertEqual(
            other.handle(.abort(reason: "bad settings")),
            [.send(.goodbye(reason: "bad settings")), .failed(reason: "bad settings")])
    }
}

final class WorkerShardWindowTests: XCTestCase {
    /// Between welcome and shard the coordinator's heartbeats queue behind the shard, so the worker
    /// waits `shardTimeoutTicks` rather than the liveness window before giving up on the coordinator.
    func testWorkerWaitsLongerForTheShard() {
        var configuration = WorkerConfiguration(name: "w")
        configuration.livenessTicks = 4
        configuration.shardTimeoutTicks = 20
        var worker = Worker(configuration: configuration)
        _ = worker.handle(.start)
        _ = worker.handle(.received(.welcome(workerIndex: 0, workerCount: 1)))
        for _ in 0..<20 { _ = worker.handle(.tick) }
        XCTAssertEqual(worker.phase, .awaitingShard)
        let actions = worker.handle(.tick)
        XCTAssertTrue(
            actions.contains { if case .coordinatorLost = $0 { return true } else { return false } }, "\(actions)")
    }
}
