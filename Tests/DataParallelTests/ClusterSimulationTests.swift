// Many-seed runs of the whole protocol on the simulated cluster (every message encoded and decoded),
// with message loss, duplication, delay, reordering and killed workers. Each failure names its seed;
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

    /// The invariants every run must keep, whatever the faults.
    func checkInvariants(_ cluster: SimulatedCluster, file: StaticString = #filePath, line: UInt = #line) {
        let context = cluster.summary
        XCTAssertEqual(cluster.decodeFailures, [], context, file: file, line: line)
        // Steps only increase, one at a time from 0.
        XCTAssertEqual(
            cluster.completedSteps.map(\.result.step), Array(0..<cluster.completedSteps.count), context,
            file: file, line: line)
        for completed in cluster.completedSteps {
            let result = completed.result
            // Exactly one gradient per live worker: the contributors are the live workers, each once ...
            XCTAssertEqual(result.contributors.count, Set(result.contributors).count, context, file: file, line: line)
            XCTAssertEqual(
                Set(result.contributors), completed.liveWorkers, "step \(result.step), \(context)",
                file: file, line: line)
            // ... and the mean equals the naive full-batch mean over their samples, so nothing was
            // counted twice and no stale or foreign gradient slipped in.
            let naive = cluster.naiveMeanGradient(
                step: result.step, weights: completed.weights,
                contributors: result.contributors)
            XCTAssertEqual(result.sampleCount, naive.samples, "step \(result.step), \(context)", file: file, line: line)
            XCTAssertEqual(
                result.lossSum, naive.lossSum, accuracy: 1e-9 * max(1, naive.lossSum), context,
                file: file, line: line)
            // With every worker contributing, the bits are those of one node computing every block.
            if result.contributors.count == cluster.options.workerCount {
                let single = cluster.singleNodeResult(step: result.step, weights: completed.weights)
                XCTAssertEqual(
                    result.averagedGradient.map(\.bitPattern), single.averagedGradient.map(\.bitPattern),
                    "step \(result.step), \(context)", file: file, line: line)
            }
            let worst =
                zip(result.averagedGradient, naive.gradient).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
            XCTAssertLessThan(
                worst, 1e-5, "step \(result.step): worst relative difference \(worst), \(context)",
                file: file, line: line)
        }
    }

    func testManySeedsWithLossDuplicationDelayAndReorderingFinishWithExactMeans() {
        for seed in UInt64(1)...200 {
            let cluster = SimulatedCluster(seed: seed, options: Self.options(seed: seed))
            cluster.run()
            XCTAssertEqual(cluster.outcome, .finished, cluster.summary)
            XCTAssertEqual(cluster.completedSteps.count, cluster.options.totalSteps, cluster.summary)
            XCTAssertTrue(cluster.deaths.isEmpty, cluster.summary)
            checkInvariants(cluster)
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
                cluster.inject(.ready(sampleCount: 1), from: intruder)
            }
            XCTAssertEqual(cluster.outcome, .finished, cluster.summary)
            checkInvariants(cluster)
            let ignored = cluster.coordinatorLog.filter {
                if case .ignored(intruder, _, "unknown sender") = $0.action { return true } else { return false }
            }
            XCTAssertGreaterThan(ignored.count, cluster.completedSteps.count, cluster.summary)
        }
    }

    func testSilentWorkerIsDeclaredDeadWithinTheLivenessWindowAndStopsTheRun() {
        for seed in UInt64(1)...200 {
            var options = Self.options(seed: seed)
            options.workerCount = max(2, options.workerCount)
            options.totalSteps = 40
            var random = ClusterRandom(seed: seed)
            let victim = Int.random(in: 0..<options.workerCount, using: &random)
            let killTick = Int.random(in: 1...150, using: &random)
            options.kills = [victim: killTick]
            let cluster = SimulatedCluster(seed: seed, options: options)
            cluster.run()
            let context = "victim \(victim) killed at tick \(killTick); \(cluster.summary)"
            checkInvariants(cluster)
            guard case .failed(let reason) = cluster.outcome else {
                XCTAssertGreaterThanOrEqual(
                    killTick, cluster.completedSteps.last?.tick ?? 0,
                    "the run must stop when a worker dies: \(context)")
                continue
            }
            guard cluster.workerIndexByPeer[SimulatedCluster.peer(ofWorker: victim)] != nil else {
                // Killed before its hello got through: the coordinator never knew it and times out the join.
                XCTAssertTrue(cluster.deaths.isEmpty && reason.contains("joined and got ready"), context)
                continue
            }
            XCTAssertEqual(cluster.deaths.map(\.peer), [SimulatedCluster.peer(ofWorker: victim)], context)
            guard let death = cluster.deaths.first else { continue }
            let deadline = killTick + options.maximumDelayTicks + options.livenessTicks + 1
            XCTAssertLessThanOrEqual(death.tick, deadline, context)
            XCTAssertGreaterThan(death.tick, killTick, context)
            if reason.contains("joined and got ready") {
                XCTAssertTrue(cluster.completedSteps.isEmpty, "died while joining: \(context)")
            } else {
                XCTAssertTrue(
                    reason.contains("sim-\(victim)") && reason.contains("step \(death.step)"),
                    "the failure must name the worker and the step: \(reason); \(context)")
            }
            if testRun?.failureCount ?? 0 > 0 { return }
        }
    }

    func testRunCanContinueWithoutADeadWorker() {
        for seed in UInt64(1)...100 {
            var options = Self.options(seed: seed)
            var random = ClusterRandom(seed: seed)
            options.workerCount = Int.random(in: 2...4, using: &random)
            options.totalSteps = 30
            options.workerDeathPolicy = .continueWithoutWorker
            let cluster = SimulatedCluster(seed: seed, options: options)
            // Kill worker 0 a few steps into training, then run to the end.
            let killAfterSteps = Int.random(in: 1...10, using: &random)
            cluster.start()
            while cluster.completedSteps.count < killAfterSteps && cluster.outcome == .running
                && cluster.now < options.maximumTicks
            {
                cluster.advance()
            }
            let killTick = cluster.now
            cluster.kill(worker: 0)
            while cluster.outcome == .running && cluster.now < options.maximumTicks { cluster.advance() }
            let context = "killed after \(killAfterSteps) steps at tick \(killTick); \(cluster.summary)"
            XCTAssertEqual(cluster.outcome, .finished, context)
            XCTAssertEqual(cluster.completedSteps.count, 30, context)
            checkInvariants(cluster)
            let victim = SimulatedCluster.peer(ofWorker: 0)
            XCTAssertEqual(cluster.deaths.map(\.peer), [victim], context)
            guard let death = cluster.deaths.first else { continue }
            XCTAssertLessThanOrEqual(
                death.tick, killTick + options.maximumDelayTicks + options.livenessTicks + 1, context)
            for completed in cluster.completedSteps where completed.tick >= death.tick {
                XCTAssertFalse(completed.result.contributors.contains(victim), context)
                XCTAssertEqual(completed.result.contributors.count, options.workerCount - 1, context)
            }
            if testRun?.failureCount ?? 0 > 0 { return }
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
