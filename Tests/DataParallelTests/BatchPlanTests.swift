// The batch plan: blocks partition the keys, shards partition the blocks, every epoch visits every
// sample once in batches of the configured size, and a seed reproduces the same batches.
import XCTest

@testable import DataParallel

final class BatchPlanTests: XCTestCase {
    func testBlocksPartitionTheKeysAndShardsPartitionTheBlocks() {
        for (samples, batch, micro) in [(10, 4, 2), (60_000, 128, 16), (101, 10, 3), (7, 7, 1), (1000, 100, 16)] {
            let plan = BatchPlan(sampleCount: samples, batchSize: batch, seed: 1, microBatchSize: micro)
            XCTAssertEqual(plan.blockCount, min(samples, (batch + micro - 1) / micro))
            var next = 0
            for block in 0..<plan.blockCount {
                let range = plan.blockRange(block)
                XCTAssertEqual(range.lowerBound, next, "\(samples)/\(batch)/\(micro) block \(block)")
                // A block's share of the samples is its micro-batch's share of the batch (within one).
                let share = Double(samples * plan.microBatchSize(block: block)) / Double(batch)
                XCTAssertLessThanOrEqual(abs(Double(range.count) - share), 1)
                next = range.upperBound
            }
            XCTAssertEqual(next, samples)
            XCTAssertEqual((0..<plan.blockCount).map { plan.microBatchSize(block: $0) }.reduce(0, +), batch)
            for workers in 1...plan.blockCount {
                let shards = (0..<workers).map { plan.shardBlocks(worker: $0, of: workers) }
                XCTAssertEqual(shards.flatMap { Array($0) }, Array(0..<plan.blockCount))
                XCTAssertTrue(shards.allSatisfy { !$0.isEmpty })
                XCTAssertEqual(shards.map { plan.keyRange(blocks: $0).count }.reduce(0, +), samples)
            }
        }
    }

    func testEachEpochVisitsEverySampleOnceInFullBatches() {
        for (samples, batch, micro) in [(103, 10, 3), (60_000, 128, 16), (50, 16, 4), (1000, 100, 16)] {
            let plan = BatchPlan(sampleCount: samples, batchSize: batch, seed: 42, microBatchSize: micro)
            XCTAssertEqual(plan.stepsPerEpoch, (samples + batch - 1) / batch, "\(samples)/\(batch)/\(micro)")
            for epoch in 0..<2 {
                var visited: [Int] = []
                let orders = (0..<plan.blockCount).map { plan.blockOrder(epoch: epoch, block: $0) }
                for step in 0..<plan.stepsPerEpoch {
                    let microBatches = plan.microBatches(step: epoch * plan.stepsPerEpoch + step, orders: orders)
                    for (block, keys) in microBatches.enumerated() {
                        XCTAssertTrue(keys.allSatisfy { plan.blockRange(block).contains($0) })
                        XCTAssertLessThanOrEqual(keys.count, plan.microBatchSize(block: block))
                    }
                    let size = microBatches.map(\.count).reduce(0, +)
                    if step + 1 < plan.stepsPerEpoch { XCTAssertEqual(size, batch, "step \(step)") }
                    visited += microBatches.flatMap { $0 }
                }
                XCTAssertEqual(visited.sorted(), Array(0..<samples))
            }
            XCTAssertNotEqual(plan.microBatches(step: 0), plan.microBatches(step: plan.stepsPerEpoch))
        }
    }

    func testSeedReproducesTheLayoutAndTheBatches() {
        let plan = BatchPlan(sampleCount: 50, batchSize: 16, seed: 7, microBatchSize: 4)
        let again = BatchPlan(sampleCount: 50, batchSize: 16, seed: 7, microBatchSize: 4)
        let other = BatchPlan(sampleCount: 50, batchSize: 16, seed: 8, microBatchSize: 4)
        XCTAssertEqual(plan.microBatches(step: 5), again.microBatches(step: 5))
        XCTAssertEqual(plan.layoutOrder, again.layoutOrder)
        XCTAssertEqual(plan.layoutOrder.sorted(), Array(0..<50))
        XCTAssertNotEqual(plan.layoutOrder, other.layoutOrder)
        XCTAssertNotEqual(plan.microBatches(step: 5), other.microBatches(step: 5))
    }

    /// The layout and the visiting orders are part of the protocol (PROTOCOL.md gives the keying): pin
    /// a few values against an independent Python implementation of SplitMix64, the seed derivation
    /// and the Fisher–Yates shuffle as PROTOCOL.md describes them.
    func testLayoutAndBlockOrdersArePinned() {
        XCTAssertEqual(
            BatchPlan(sampleCount: 10, batchSize: 10, seed: 1, microBatchSize: 10).layoutOrder,
            [5, 0, 7, 1, 2, 4, 6, 3, 9, 8])
        let plan = BatchPlan(sampleCount: 20, batchSize: 8, seed: 1, microBatchSize: 4)
        XCTAssertEqual(plan.blockCount, 2)
        XCTAssertEqual(plan.blockOrder(epoch: 0, block: 0), [4, 8, 2, 3, 5, 7, 0, 9, 6, 1])
        XCTAssertEqual(plan.blockOrder(epoch: 0, block: 1), [12, 14, 10, 11, 16, 19, 17, 18, 13, 15])
        XCTAssertEqual(plan.blockOrder(epoch: 1, block: 1), [11, 17, 12, 19, 16, 13, 14, 18, 10, 15])
        XCTAssertEqual(plan.microBatches(step: 1), [[5, 7, 0, 9], [16, 19, 17, 18]])
    }

    /// An assignment for any blocks lists each block's micro-batch by sample keys.
    func testAssignmentListsTheMicroBatchesOfItsBlocks() {
        let plan = BatchPlan(sampleCount: 103, batchSize: 10, seed: 3, microBatchSize: 3)
        let microBatches = plan.microBatches(step: 4)
        for blocks in [Array(plan.shardBlocks(worker: 1, of: 2)), [0, 3]] {
            let assignment = plan.assignment(
                step: 4, blocks: blocks, microBatches: microBatches.map { $0[...] }, weights: [1, 2])
            XCTAssertTrue(assignment.isWellFormed)
            XCTAssertEqual(assignment.blocks, blocks)
            XCTAssertEqual(
                assignment.microBatchIndices.map { $0.indices.map { Int($0) } }, blocks.map { microBatches[$0] })
        }
    }

    /// Blocks as runs of keys: consecutive blocks make one run.
    func testKeyRunsJoinConsecutiveBlocks() {
        let plan = BatchPlan(sampleCount: 103, batchSize: 10, seed: 3, microBatchSize: 3)
        let runs = plan.keyRuns(blocks: [3, 0, 1])
        XCTAssertEqual(runs.map(\.blocks), [0..<2, 3..<4])
        XCTAssertEqual(runs.map(\.keys), [plan.keyRange(blocks: 0..<2), plan.blockRange(3)])
    }
}
