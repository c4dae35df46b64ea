// The batch plan: shards partition the data, every epoch visits every sample once, and a seed
// reproduces the same batches.
import XCTest
@testable import DataParallel

final class BatchPlanTests: XCTestCase {
    func testShardsPartitionTheDataAndOwnerInvertsThem() {
        for (samples, workers) in [(10, 3), (60_000, 7), (5, 5), (1, 1), (101, 4)] {
            let plan = BatchPlan(sampleCount: samples, workerCount: workers, batchSize: 4, seed: 1)
            var next = 0
            for worker in 0..<workers {
                let range = plan.shardRange(worker: worker)
                XCTAssertEqual(range.lowerBound, next)
                XCTAssertFalse(range.isEmpty)
                XCTAssertLessThanOrEqual(abs(range.count - samples / workers), 1)
                for (local, sample) in range.enumerated() where local < 3 || sample == range.upperBound - 1 {
                    XCTAssertTrue(
                        plan.owner(ofSample: sample) == (worker, local), "sample \(sample) of \(samples)/\(workers)")
                }
                next = range.upperBound
            }
            XCTAssertEqual(next, samples)
        }
    }

    func testEachEpochVisitsEverySampleOnce() {
        let plan = BatchPlan(sampleCount: 103, workerCount: 3, batchSize: 10, seed: 42)
        XCTAssertEqual(plan.stepsPerEpoch, 11)
        for epoch in 0..<3 {
            let visited = (0..<plan.stepsPerEpoch).flatMap { plan.globalBatch(step: epoch * plan.stepsPerEpoch + $0) }
            XCTAssertEqual(visited.sorted(), Array(0..<103))
        }
        XCTAssertEqual(plan.globalBatch(step: 10).count, 3, "the last batch of an epoch holds the remainder")
        XCTAssertNotEqual(plan.permutation(epoch: 0), plan.permutation(epoch: 1))
    }

    func testSeedReproducesBatchesAndLocalAssignmentsCoverTheBatch() {
        let plan = BatchPlan(sampleCount: 50, workerCount: 4, batchSize: 16, seed: 7)
        let again = BatchPlan(sampleCount: 50, workerCount: 4, batchSize: 16, seed: 7)
        XCTAssertEqual(plan.globalBatch(step: 5), again.globalBatch(step: 5))
        XCTAssertNotEqual(
            plan.permutation(epoch: 0),
            BatchPlan(sampleCount: 50, workerCount: 4, batchSize: 16, seed: 8).permutation(epoch: 0))
        let batch = plan.globalBatch(step: 5)
        let assignments = plan.localAssignments(of: batch)
        let rebuilt = assignments.enumerated().flatMap { worker, locals in
            locals.map { plan.shardRange(worker: worker).lowerBound + Int($0) }
        }
        XCTAssertEqual(rebuilt.sorted(), batch.sorted())
    }

    /// The permutation is part of the run's reproducibility: pin the first values of one seed.
    func testPermutationIsPinned() {
        let plan = BatchPlan(sampleCount: 10, workerCount: 1, batchSize: 10, seed: 1)
        // Values from an independent Python implementation of SplitMix64 + Fisher–Yates (see BatchPlan).
        XCTAssertEqual(plan.permutation(epoch: 0), [4, 2, 8, 1, 9, 3, 0, 6, 7, 5])
        XCTAssertEqual(plan.permutation(epoch: 1), [5, 7, 3, 8, 0, 6, 1, 2, 4, 9])
    }

    /// Every global batch takes an equal share from each worker, within one sample of the exact
    /// proportion, so a synchronous step is not held up by a worker that drew more samples.
    func testEveryBatchTakesAnEqualShareFromEachWorker() {
        for (samples, workers, batch) in [(1000, 2, 64), (1000, 3, 64), (997, 4, 50), (60_000, 2, 128), (103, 3, 10)] {
            let plan = BatchPlan(sampleCount: samples, workerCount: workers, batchSize: batch, seed: 5)
            for step in 0..<plan.stepsPerEpoch {
                let counts = plan.localAssignments(of: plan.globalBatch(step: step)).map(\.count)
                let size = counts.reduce(0, +)
                for (worker, count) in counts.enumerated() {
                    let share = Double(size) * Double(plan.shardRange(worker: worker).count) / Double(samples)
                    XCTAssertLessThanOrEqual(
                        abs(Double(count) - share), 1.0 + 1e-9,
                        "\(samples) samples, \(workers) workers, batch \(batch), step \(step): \(counts)")
                }
            }
        }
    }
}
