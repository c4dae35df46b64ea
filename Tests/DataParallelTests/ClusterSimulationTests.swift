// Many-seed runs of the whole protocol on the simulated cluster (every message encoded and decoded),
// with message loss, duplication, delay, reordering, and workers killed, paused, wedged, restarted and
// joining late, and the coordinator restarted from a checkpoint, at every phase of a step: each run
// must end with the same weights, bit for bit, as the undisturbed run. Each failure names its seed;
// replay one with `SimulatedCluster(seed: <seed>, options: ...)`.
import XCTest
import TestSupport
import DataParallel

final class ClusterSimulationTests: XCTestCase {
    /// Options for one seed: worker count, faults and timing vary with the seed.
    static func options(seed: UInt64) -> ClusterOptions {
        var random = ClusterRandom(seed: seed ^ 0xA5A5)
        var options = ClusterOptions()
        options.workerCount = Int.random(in: 1...4, using: &random)
        options.sampleCount = Int.random(in: 20...60, using: &random)
        options.batchSize = Int.random(in: 3...16, using: &random)
        options.microBatchSize = Int.random(in: 1...3, using: &random)
        options.batchSize = max(options.batchSize, 4 * options.microBatchSize)  // Up to 4 workers need 4 blocks.
        options.totalSteps = Int.random(in: 5...14, using: &random)
        options.dropProbability = 0.05
        options.duplicateProbability = 0.05
        options.maximumDelayTicks = Int.random(in: 0...3, using: &random)
        options.reorders = random.chance(0.3)
        options.computeTicks = 0...Int.random(in: 0...4, using: &random)
        return options
    }

    /// The invariants every run must keep, whatever the faults: steps in order, each one the same bits
    /// as one node computing every micro-batch, and each epoch using each sample exactly once.
    func checkInvariants(_ cluster: SimulatedCluster, file: StaticString = #filePath, line: UInt = #line) {
        let context = cluster.summary
        XCTAssertEqual(cluster.decodeFailures, [], context, file: file, line: line)
        XCTAssertEqual(
            cluster.completedSteps.map(\.result.step), Array(0..<cluster.completedSteps.count), context,
            file: file, line: line)
        for completed in cluster.completedSteps {
            let result = completed.result
            XCTAssertEqual(result.contributors.count, Set(result.contributors).count, context, file: file, line: line)
            let single = cluster.singleNodeResult(step: result.step, weights: completed.weights)
            XCTAssertEqual(
                result.averagedGradient.map(\.bitPattern), single.averagedGradient.map(\.bitPattern),
                "step \(result.step), \(context)", file: file, line: line)
            XCTAssertEqual(result.lossSum.bitPattern, single.lossSum.bitPattern, context, file: file, line: line)
            let naive = cluster.naiveMeanGradient(step: result.step, weights: completed.weights)
            XCTAssertEqual(result.sampleCount, naive.samples, "step \(result.step), \(context)", file: file, line: line)
            let worst =
                zip(result.averagedGradient, naive.gradient).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
            XCTAssertLessThan(
                worst, 1e-5, "step \(result.step): worst relative difference \(worst), \(context)",
                file: file, line: line)
        }
        let plan = cluster.coordinator.plan
        let epochs = cluster.completedSteps.count / plan.stepsPerEpoch
        for epoch in 0..<epochs {
            let steps = cluster.completedSteps[(epoch * plan.stepsPerEpoch)..<((epoch + 1) * plan.stepsPerEpoch)]
            XCTAssertEqual(
                steps.reduce(0) { $0 + $1.result.sampleCount }, cluster.data.count,
                "epoch \(epoch) must use every sample once: \(context)", file: file, line: line)
        }
    }

    /// The undisturbed run of the same seed and settings (no faults, no message loss).
    static func undisturbed(_ cluster: SimulatedCluster) -> SimulatedCluster {
        var options = cluster.options
        options.kills = [:]
        options.pauses = [:]
        options.wedges = [:]
        options.restarts = [:]
        options.poisons = [:]
        options.liars = [:]
        options.auditFraction = 0  // Audits never change the model: the reference runs without.
        options.lateJoins = []
        options.coordinatorRestart = nil
        options.dropProbability = 0
        options.duplicateProbability = 0
        let reference = SimulatedCluster(seed: cluster.seed, options: options)
        reference.run()
        return reference
    }

    /// The run finished all its steps with the undisturbed run's weights, bit for bit.
    func checkSameModel(_ cluster: SimulatedCluster, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(cluster.outcome, .finished, cluster.summary, file: file, line: line)
        XCTAssertEqual(
            cluster.completedSteps.count, cluster.options.totalSteps, cluster.summary, file: file, line: line)
        let reference = Self.undisturbed(cluster)
        XCTAssertEqual(reference.outcome, .finished, reference.summary, file: file, line: line)
        XCTAssertEqual(
            cluster.weights.map(\.bitPattern), reference.weights.map(\.bitPattern),
            "the model differs from the undisturbed run's: \(cluster.summary)", file: file, line: line)
    }

    /// Runs `seeds`, each with options from `configure`, checking the invariants and the model.
    func runSeeds(
        _ seeds: ClosedRange<UInt64>, file: StaticString = #filePath, line: UInt = #line,
        configure: (inout ClusterOptions, inout ClusterRandom) -> Void,
        check: (SimulatedCluster) -> Void = { _ in }
    ) {
        for seed in seeds {
            var options = Self.options(seed: seed)
            var random = ClusterRandom(seed: seed &* 31)
            configure(&options, &random)
            let cluster = SimulatedCluster(seed: seed, options: options)
            cluster.run()
            checkInvariants(cluster, file: file, line: line)
            checkSameModel(cluster, file: file, line: line)
            check(cluster)
            if testRun?.failureCount ?? 0 > 0 {
                for (index, log) in cluster.workerLogs.enumerated() {
                    let ends = log.filter {
                        if case .failed = $0.action { true } else if case .finished = $0.action { true } else { false }
                    }
                    print(
                        "worker \(index): \(cluster.workers[index].phase) alive \(cluster.isAlive[index]) \(ends.map { "\($0.tick): \($0.action)" })"
                    )
                    print("   last: \(log.suffix(6).map { "\($0.tick): \(String(describing: $0.action).prefix(90))" })")
                }
                return
            }
        }
    }

    /// The tick at which training had started (the coordinator's `trainingStarted`), or nil.
    static func trainingStartTick(_ cluster: SimulatedCluster) -> Int? {
        cluster.coordinatorLog.first { if case .trainingStarted = $0.action { true } else { false } }?.tick
    }

    func testAWorkerKilledAtAnyPhaseOfAStepIsCoveredByTheOthers() {
        runSeeds(1...150) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 30
            // From before the join completes (its slot is then taken by a late joiner) to the end.
            let victim = Int.random(in: 0..<options.workerCount, using: &random)
            options.kills = [victim: Int.random(in: 1...200, using: &random)]
            options.lateJoins = [Int.random(in: 1...60, using: &random)]
        } check: { cluster in
            for death in cluster.deaths {
                XCTAssertTrue(
                    death.reason.contains("silent") || death.reason.contains("reconnected"),
                    "\(death.reason): \(cluster.summary)")
            }
        }
    }

    func testAPausedWorkerIsDeclaredDeadWithinTheLivenessWindowAndComesBack() {
        runSeeds(1...100) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 30
            let victim = Int.random(in: 0..<options.workerCount, using: &random)
            options.pauses = [
                victim: Pause(
                    tick: Int.random(in: 1...150, using: &random), ticks: Int.random(in: 40...120, using: &random))
            ]
        } check: { cluster in
            guard let pause = cluster.options.pauses.first?.value,
                let death = cluster.deaths.first(where: { $0.reason.contains("silent") })
            else { return }
            XCTAssertLessThanOrEqual(
                death.tick, pause.tick + cluster.options.maximumDelayTicks + cluster.options.livenessTicks + 2,
                cluster.summary)
        }
    }

    func testAWedgedWorkerIsEvictedAfterTheStepTimeout() {
        runSeeds(1...100) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 25
            options.stepTimeoutTicks = 50
            let victim = Int.random(in: 0..<options.workerCount, using: &random)
            options.wedges = [victim: Int.random(in: 1...150, using: &random)]
        } check: { cluster in
            guard let wedged = cluster.options.wedges.first, wedged.value < (cluster.completedSteps.last?.tick ?? 0)
            else { return }
            let evictions = cluster.deaths.filter {
                $0.peer.description.hasPrefix("worker-\(wedged.key)") && $0.reason.contains("evicted")
            }
            let trained = cluster.completedSteps.contains { $0.tick > wedged.value + 60 }
            if trained { XCTAssertEqual(evictions.count, 1, cluster.summary) }
        }
    }

    /// A worker whose answers carry a NaN is evicted and its micro-batches computed by others: the
    /// model is the undisturbed one (before, one NaN made every weight NaN).
    func testAPoisoningWorkerIsEvictedAndTheModelIsUnchanged() {
        var evictions = 0
        runSeeds(1...100) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 25
            options.poisons = [
                Int.random(in: 0..<options.workerCount, using: &random): Int.random(in: 1...150, using: &random)
            ]
        } check: { cluster in
            evictions += cluster.deaths.filter { $0.reason.contains("evicted") && $0.reason.contains("is nan") }.count
        }
        XCTAssertGreaterThan(evictions, 50, "most runs must meet the poison")
    }

    /// A worker that nudges one gradient value (finite, so no other check can see it) is caught by an
    /// audit, named and evicted; its answers never count, and the model is the undisturbed one.
    func testALyingWorkerIsCaughtByAnAuditAndTheModelIsUnchanged() {
        var caught = 0, honestEvicted = 0, refereed = 0
        runSeeds(1...80) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 40
            options.auditFraction = 1  // Every answer: so that no lie can count.
            options.duplicateProbability = 0.05
            options.maximumDelayTicks = 2
            options.liars = [
                Int.random(in: 0..<options.workerCount, using: &random): Int.random(in: 1...100, using: &random)
            ]
        } check: { cluster in
            let liar = cluster.options.liars.keys.first ?? -1
            for death in cluster.deaths where death.reason.contains("evicted") {
                let liarPeers = (0..<8).map { SimulatedCluster.peer(liar, connection: $0) }
                if death.reason.contains("audit") && liarPeers.contains(death.peer) {
                    caught += 1
                } else if death.reason.contains("audit") {
                    honestEvicted += 1
                }
            }
            refereed += cluster.refereed
        }
        XCTAssertGreaterThan(caught, 60, "most runs must catch the liar")
        XCTAssertEqual(honestEvicted, 0, "an honest worker was evicted by an audit")
        XCTAssertGreaterThanOrEqual(refereed, caught)
    }

    /// An honest worker that answers with leaves agrees with one that adds them first: audits compare
    /// answers added along the tree, so neither is evicted.
    func testAuditsCompareAnswersAddedAlongTheTree() {
        var audited = 0
        runSeeds(1...30) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.batchSize = 16  // Eight blocks: workers hold runs of several.
            options.totalSteps = 20
            options.auditFraction = 1
            options.leafAnswers = [0]
        } check: { cluster in
            audited += cluster.coordinator.auditedAnswers
            XCTAssertEqual(cluster.coordinator.auditDisagreements, 0, cluster.summary)
            XCTAssertTrue(cluster.deaths.isEmpty, cluster.summary)
        }
        XCTAssertGreaterThan(audited, 300)
    }

    /// With audits on, faults of every kind still end with the undisturbed model, and answers are
    /// audited (and agree: nobody lies here).
    func testAuditsUnderFaultsKeepTheModel() {
        var audited = 0
        runSeeds(1...60) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 30
            options.auditFraction = 0.3
            options.dropProbability = 0.02
            options.duplicateProbability = 0.05
            options.maximumDelayTicks = 3
            options.stepTimeoutTicks = 60
            options.kills = [
                Int.random(in: 0..<options.workerCount, using: &random): Int.random(in: 1...300, using: &random)
            ]
            options.lateJoins = [Int.random(in: 1...200, using: &random)]
        } check: { cluster in
            audited += cluster.coordinator.auditedAnswers
            XCTAssertEqual(cluster.coordinator.auditDisagreements, 0, cluster.summary)
        }
        XCTAssertGreaterThan(audited, 200)
    }

    func testRestartedWorkersAndLateJoinersTakeAShareOrWaitAsSpares() {
        var spares = 0, promotions = 0
        runSeeds(1...100) { options, random in
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 30
            options.lateJoins = [Int.random(in: 1...100, using: &random)]
            let victim = Int.random(in: 0..<options.workerCount, using: &random)
            options.restarts = [victim: Int.random(in: 20...200, using: &random)]
        } check: { cluster in
            for case .workerJoined(let info, _, _, _) in cluster.coordinatorLog.map(\.action) where info.slot == nil {
                spares += 1
            }
            for entry in cluster.coordinatorLog {
                if case .send(.welcome(let index, let count), _) = entry.action, index < count,
                    cluster.coordinatorLog.contains(where: {
                        if case .workerJoined(let info, _, _, _) = $0.action { info.slot == nil } else { false }
                    })
                {
                    promotions += 1
                }
            }
        }
        XCTAssertGreaterThan(spares, 0, "the runs must exercise spares")
        XCTAssertGreaterThan(promotions, 0, "the runs must promote spares")
    }

    func testACoordinatorRestartedFromACheckpointEndsWithTheSameModel() {
        var restarts = 0
        runSeeds(1...100) { options, random in
            options.workerCount = Int.random(in: 1...4, using: &random)
            options.totalSteps = 24
            options.coordinatorRestart = CoordinatorRestart(
                checkpointStep: Int.random(in: 1...20, using: &random),
                downAfterTicks: Int.random(in: 1...40, using: &random),
                downTicks: Int.random(in: 1...60, using: &random))
        } check: { cluster in
            restarts += cluster.coordinatorRestarts
        }
        XCTAssertGreaterThan(restarts, 60, "most runs must restart (the others finished before the kill)")
    }

    /// One worker of four is killed, one paused, one wedged; two more join late; the coordinator is
    /// restarted; messages are lost, duplicated, delayed and reordered.
    func testEverythingAtOnce() {
        runSeeds(1...60) { options, random in
            options.workerCount = 4
            options.totalSteps = 40
            options.stepTimeoutTicks = 60
            var workers = Array(0..<options.workerCount).shuffled(using: &random)
            options.kills = [workers.removeLast(): Int.random(in: 1...300, using: &random)]
            if let paused = workers.popLast() {
                options.pauses = [paused: Pause(tick: Int.random(in: 1...300, using: &random), ticks: 50)]
            }
            if let wedged = workers.popLast() { options.wedges = [wedged: Int.random(in: 1...300, using: &random)] }
            options.lateJoins = [Int.random(in: 1...100, using: &random), Int.random(in: 100...300, using: &random)]
            options.coordinatorRestart = CoordinatorRestart(
                checkpointStep: Int.random(in: 1...35, using: &random),
                downAfterTicks: Int.random(in: 1...40, using: &random),
                downTicks: 30)
        }
    }

    func testTooFewWorkersFailTheRun() {
        var options = ClusterOptions()
        options.workerCount = 3
        options.minimumWorkers = 3
        options.totalSteps = 40
        options.kills = [1: 120]
        let cluster = SimulatedCluster(seed: 9, options: options)
        cluster.run()
        guard case .failed(let reason) = cluster.outcome else { return XCTFail(cluster.summary) }
        XCTAssertTrue(reason.contains("fewer than the minimum of 3"), reason)
    }

    func testManySeedsWithLossDuplicationDelayAndReorderingFinishWithExactMeans() {
        for seed in UInt64(1)...200 {
            let cluster = SimulatedCluster(seed: seed, options: Self.options(seed: seed))
            cluster.run()
            XCTAssertEqual(cluster.outcome, .finished, cluster.summary)
            XCTAssertEqual(cluster.completedSteps.count, cluster.options.totalSteps, cluster.summary)
            XCTAssertTrue(cluster.deaths.isEmpty, cluster.summary)
            checkInvariants(cluster)
            checkSameModel(cluster)
            // Every worker that received the shutdown message finished cleanly.
            for (index, log) in cluster.workerLogs.enumerated() {
                let failed = log.contains { if case .failed = $0.action { return true } else { return false } }
                XCTAssertFalse(failed, "worker \(index) failed: \(cluster.summary)")
            }
            if testRun?.failureCount ?? 0 > 0 { return }
        }
    }

    func testDuplicatesAndStaleGradientsAreIgnoredNotApplied() {
        var ignoredDuplicates = 0, ignoredStale = 0
        for seed in UInt64(1)...50 {
            var options = Self.options(seed: seed)
            options.duplicateProbability = 0.5
            options.maximumDelayTicks = 4
            options.reorders = true
            let cluster = SimulatedCluster(seed: seed, options: options)
            cluster.run()
            XCTAssertEqual(cluster.outcome, .finished, cluster.summary)
            checkInvariants(cluster)
            for case .ignored(_, .gradient?, let reason) in cluster.coordinatorLog.map(\.action) {
                if reason.contains("duplicate") { ignoredDuplicates += 1 } else { ignoredStale += 1 }
            }
        }
        XCTAssertGreaterThan(ignoredDuplicates, 0, "the runs must exercise duplicate gradients")
        XCTAssertGreaterThan(ignoredStale, 0, "the runs must exercise stale gradients")
    }

    func testUnknownSenderIsIgnored() {
        for seed in UInt64(1)...20 {
            let cluster = SimulatedCluster(seed: seed, options: Self.options(seed: seed))
            cluster.start()
            let intruder = PeerID("intruder")
            while cluster.outcome == .running && cluster.now < cluster.options.maximumTicks {
                cluster.advance()
                let step = cluster.completedSteps.count
                cluster.inject(
                    .gradient(
                        GradientReport(
                            step: step,
                            pieces: [
                                GradientPiece(
                                    blocks: 0..<1, sampleCount: 1, correctCount: 1, lossSum: 1e6,
                                    gradient: Array(repeating: 1e6, count: cluster.options.parameterCount))
                            ])),
                    from: intruder)
                cluster.inject(.ready(firstKey: 0, sampleCount: 1), from: intruder)
            }
            XCTAssertEqual(cluster.outcome, .finished, cluster.summary)
            checkInvariants(cluster)
            let ignored = cluster.coordinatorLog.filter {
                if case .ignored(intruder, _, "unknown sender") = $0.action { return true } else { return false }
            }
            XCTAssertGreaterThan(ignored.count, cluster.completedSteps.count, cluster.summary)
        }
    }

    func testVersionMismatchIsRefusedOnBothSides() {
        var options = ClusterOptions()
        options.workerCount = 2
        options.workerProtocolVersions = [1: ProtocolInfo.version + 1]
        options.joinTimeoutTicks = 100
        let cluster = SimulatedCluster(seed: 77, options: options)
        cluster.run()
        let refusals = cluster.coordinatorLog.compactMap { entry -> String? in
            if case .workerRefused(_, "sim-1", let reason) = entry.action { return reason } else { return nil }
        }
        XCTAssertFalse(refusals.isEmpty, cluster.summary)
        XCTAssertTrue(refusals.allSatisfy { $0.contains("version \(ProtocolInfo.version + 1)") }, "\(refusals)")
        guard case .failed(let workerReason)? = cluster.workerLogs[1].last?.action else {
            return XCTFail("the mismatched worker must fail: \(cluster.workerLogs[1].map(\.action))")
        }
        XCTAssertTrue(workerReason.contains("refused") && workerReason.contains("version"), workerReason)
        guard case .failed(let coordinatorReason) = cluster.outcome else { return XCTFail(cluster.summary) }
        XCTAssertTrue(
            coordinatorReason.contains("only 1 of 2") && coordinatorReason.contains("sim-0"), coordinatorReason)
    }

    func testASeedReproducesItsRun() {
        let first = SimulatedCluster(seed: 4242, options: Self.options(seed: 4242))
        let second = SimulatedCluster(seed: 4242, options: Self.options(seed: 4242))
        first.run()
        second.run()
        XCTAssertEqual(first.completedSteps.map(\.result), second.completedSteps.map(\.result))
        XCTAssertEqual(first.now, second.now)
        XCTAssertEqual(first.messagesDropped, second.messagesDropped)
    }
}
