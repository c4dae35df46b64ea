// The reduction tree: the same bits for every split of the blocks into contiguous runs (what workers
// and lanes hold), checked against an independent pairwise reference; node shapes; refusals.
import XCTest

@testable import DataParallel
import TestSupport

final class GradientTreeTests: XCTestCase {
    /// Leaves whose values span many magnitudes, so that the order of Float additions shows in the bits.
    private func leaves(_ count: Int, values: Int, seed: UInt64) -> [GradientPiece] {
        var random = TestGenerator(seed: seed)
        return (0..<count).map { block in
            GradientPiece(
                blocks: block..<(block + 1), sampleCount: block % 3 + 1, correctCount: block % 2,
                lossSum: Double.random(in: 0...3, using: &random),
                gradient: (0..<values).map { _ in
                    Float.random(in: -1...1, using: &random) * Float(1 << Int.random(in: 0...20, using: &random))
                })
        }
    }

    /// The tree as PROTOCOL.md defines it, written independently: pad to a power of two and add pairs
    /// level by level (a missing right half leaves the left as it is).
    private func reference(_ leaves: [[Float]]) -> [Float] {
        var level: [[Float]?] = leaves
        var width = 1
        while width < leaves.count { width *= 2 }
        level += Array(repeating: nil, count: width - leaves.count)
        while level.count > 1 {
            level = stride(from: 0, to: level.count, by: 2).map { index in
                guard let left = level[index] else { return nil }
                guard let right = level[index + 1] else { return left }
                return zip(left, right).map { $0 + $1 }
            }
        }
        return level[0] ?? []
    }

    /// All ways to cut 0..<count into contiguous runs, as lists of runs.
    private func splits(_ count: Int) -> [[Range<Int>]] {
        (0..<(1 << max(0, count - 1))).map { mask in
            var runs: [Range<Int>] = [], start = 0
            for cut in 1..<max(1, count) where mask & (1 << (cut - 1)) != 0 {
                runs.append(start..<cut)
                start = cut
            }
            runs.append(start..<count)
            return runs
        }
    }

    func testEverySplitIntoContiguousRunsGivesTheReferenceBits() throws {
        for blockCount in 1...9 {
            let tree = GradientTree(blockCount: blockCount)
            let leaves = leaves(blockCount, values: 64, seed: UInt64(blockCount))
            let expected = reference(leaves.map(\.gradient))
            for runs in splits(blockCount) {
                // Each run computed "elsewhere" into its maximal nodes, then the coordinator finishes.
                let pieces = runs.flatMap { run in
                    StepAssignment(
                        step: 0, epoch: 0, weights: [], sampleKeys: [],
                        microBatches: run.map { MicroBatch(block: $0, sampleCount: 0) }
                    ).pieces(fromLeaves: Array(leaves[run]), tree: tree)
                }
                XCTAssertTrue(pieces.allSatisfy { tree.isNode($0.blocks) })
                let root = try XCTUnwrap(tree.sum(pieces), "\(blockCount) blocks split \(runs)")
                XCTAssertEqual(root.gradient.map(\.bitPattern), expected.map(\.bitPattern), "split \(runs)")
                XCTAssertEqual(root.sampleCount, leaves.map(\.sampleCount).reduce(0, +))
                XCTAssertEqual(root.correctCount, leaves.map(\.correctCount).reduce(0, +))
            }
        }
    }

    /// The test above could fail: adding the same leaves left to right gives other bits.
    func testAnotherOrderGivesOtherBits() {
        let leaves = leaves(8, values: 256, seed: 99).map(\.gradient)
        let sequential = leaves.dropFirst().reduce(leaves[0]) { zip($0, $1).map { $0 + $1 } }
        XCTAssertNotEqual(sequential.map(\.bitPattern), reference(leaves).map(\.bitPattern))
    }

    func testMaximalNodesOfARun() {
        let tree = GradientTree(blockCount: 8)
        XCTAssertEqual(tree.nodes(covering: 0..<8), [0..<8])
        XCTAssertEqual(tree.nodes(covering: 0..<3), [0..<2, 2..<3])
        XCTAssertEqual(tree.nodes(covering: 3..<8), [3..<4, 4..<8])
        XCTAssertEqual(tree.nodes(covering: 1..<7), [1..<2, 2..<4, 4..<6, 6..<7])
        let five = GradientTree(blockCount: 5)
        XCTAssertEqual(five.nodes(covering: 0..<5), [0..<5])
        XCTAssertEqual(five.nodes(covering: 4..<5), [4..<5])
        XCTAssertEqual(five.nodes(covering: 2..<5), [2..<4, 4..<5])
        XCTAssertEqual(five.nodes(covering: 3..<7), [], "a run outside the tree has no nodes")
        XCTAssertTrue(five.isNode(0..<5) && five.isNode(4..<5) && five.isNode(0..<4))
        XCTAssertFalse(five.isNode(1..<3) || five.isNode(3..<5) || five.isNode(0..<6))
    }

    func testPiecesThatAreNotAPartitionAreRefused() {
        let tree = GradientTree(blockCount: 4)
        let leaves = leaves(4, values: 3, seed: 1)
        XCTAssertNil(tree.sum(Array(leaves.prefix(3))), "a block missing")
        XCTAssertNil(tree.sum(leaves + [leaves[0]]), "a block twice")
        var misaligned = leaves[1]
        misaligned.blocks = 1..<3
        XCTAssertNil(tree.sum([leaves[0], misaligned, leaves[3]]), "not a node")
        var short = leaves[2]
        short.gradient.removeLast()
        XCTAssertNil(tree.sum([leaves[0], leaves[1], short, leaves[3]]), "values of different lengths")
    }

    func testMeanDividesBySampleCount() {
        let piece = GradientPiece(blocks: 0..<1, sampleCount: 4, correctCount: 0, lossSum: 0, gradient: [4, -2, 1])
        XCTAssertEqual(GradientTree.mean(of: piece), [1, -0.5, 0.25])
        var empty = piece
        empty.sampleCount = 0
        XCTAssertEqual(GradientTree.mean(of: empty), [0, 0, 0])
    }
}
