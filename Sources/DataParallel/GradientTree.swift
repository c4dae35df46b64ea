// The one fixed order in which micro-batch gradients are added: a binary tree over the blocks
// (micro-batch positions) 0..<blockCount. Whoever computes which micro-batches, every floating-point
// addition happens in the same order, so the summed gradient has the same bits for any number of
// workers and threads. Also the one averaging function. Pure arithmetic on flat [Float] slabs.
//
// The tree: with L = ceil(log2 K), node (l, i) covers blocks [i·2^l, min((i+1)·2^l, K)); a leaf is one
// micro-batch's gradient; an inner node is left + right (element by element, in Float), or just left
// when its right half lies beyond K. Nodes are named here by the blocks they cover (`Range<Int>`).

/// The summed gradient of the micro-batches of a node of the tree, with their loss figures.
public struct GradientPiece: Equatable, Sendable {
    /// The blocks (micro-batch positions) covered: a node of the tree.
    public var blocks: Range<Int>
    /// Samples summed.
    public var sampleCount: Int
    /// Samples classified correctly at the step's weights.
    public var correctCount: Int
    /// The sum of the per-sample losses, added along the same tree.
    public var lossSum: Double
    /// The summed (not averaged) gradient: `[parameterCount]`.
    public var gradient: [Float]

    public init(blocks: Range<Int>, sampleCount: Int, correctCount: Int, lossSum: Double, gradient: [Float]) {
        self.blocks = blocks
        self.sampleCount = sampleCount
        self.correctCount = correctCount
        self.lossSum = lossSum
        self.gradient = gradient
    }
}

/// The fixed reduction tree over `blockCount` leaves.
public struct GradientTree: Sendable, Equatable {
    public let blockCount: Int
    /// Levels above the leaves: ceil(log2 blockCount).
    private let height: Int

    public init(blockCount: Int) {
        precondition(blockCount >= 1, "a tree needs a leaf")
        self.blockCount = blockCount
        var height = 0
        while (1 << height) < blockCount { height += 1 }
        self.height = height
    }

    /// The blocks node (level, index) covers (empty when it lies wholly beyond the last block).
    private func node(level: Int, index: Int) -> Range<Int> {
        let lower = min(blockCount, index << level)
        return lower..<min(blockCount, (index + 1) << level)
    }

    /// Whether `blocks` is the range of some node of the tree.
    public func isNode(_ blocks: Range<Int>) -> Bool {
        guard !blocks.isEmpty, blocks.upperBound <= blockCount, blocks.lowerBound >= 0 else { return false }
        for level in 0...height where blocks.lowerBound % (1 << level) == 0 {
            if node(level: level, index: blocks.lowerBound >> level) == blocks { return true }
        }
        return false
    }

    /// The maximal nodes that together cover the contiguous run `blocks`, in order: what a worker
    /// holding that run sends (usually one node). None when the run lies outside the tree (a step that
    /// names blocks the run does not have: the answer then covers nothing and is refused).
    public func nodes(covering blocks: Range<Int>) -> [Range<Int>] {
        guard blocks.lowerBound >= 0, blocks.upperBound <= blockCount else { return [] }
        var result: [Range<Int>] = []
        var lower = blocks.lowerBound
        while lower < blocks.upperBound {
            var best = lower..<(lower + 1)
            for level in 1...max(1, height) where lower % (1 << level) == 0 {
                let candidate = node(level: level, index: lower >> level)
                guard candidate.upperBound <= blocks.upperBound else { break }
                best = candidate
            }
            result.append(best)
            lower = best.upperBound
        }
        return result
    }

    /// Adds `pieces` (disjoint nodes, in any order) along the tree into the node `target`, which
    /// they must cover exactly; nil if they do not. Each piece enters whole: a piece that is itself
    /// a node is used as it is, so a sum of the same leaves gives the same bits however they were
    /// grouped into pieces.
    public func sum(_ pieces: [GradientPiece], into target: Range<Int>) -> GradientPiece? {
        var byRange: [Range<Int>: GradientPiece] = [:]
        for piece in pieces {
            guard isNode(piece.blocks), byRange.updateValue(piece, forKey: piece.blocks) == nil else { return nil }
        }
        guard isNode(target) else { return nil }
        var used = 0
        let result = sum(node: target, level: levelOf(target), pieces: byRange, used: &used, allowingGaps: false)
        return used == byRange.count ? result : nil
    }

    /// The root: every block's piece added along the whole tree; nil unless `pieces` cover every block.
    public func sum(_ pieces: [GradientPiece]) -> GradientPiece? { sum(pieces, into: 0..<blockCount) }

    /// The root of whatever `pieces` (disjoint nodes) cover, missing subtrees left out; nil for no
    /// pieces. For a run that carries on without a lost worker's blocks.
    public func partialSum(_ pieces: [GradientPiece]) -> GradientPiece? {
        let byRange = Dictionary(
            pieces.filter { isNode($0.blocks) }.map { ($0.blocks, $0) }, uniquingKeysWith: { a, _ in a })
        var used = 0
        return sum(node: 0..<blockCount, level: height, pieces: byRange, used: &used, allowingGaps: true)
    }

    /// The lowest level at which `blocks` (a node) is a node.
    private func levelOf(_ blocks: Range<Int>) -> Int {
        var level = 0
        while node(level: level, index: blocks.lowerBound >> level) != blocks { level += 1 }
        return level
    }

    private func sum(
        node range: Range<Int>, level: Int, pieces: [Range<Int>: GradientPiece], used: inout Int, allowingGaps: Bool
    ) -> GradientPiece? {
        if let piece = pieces[range] {
            used += 1
            return piece
        }
        guard level > 0 else { return nil }
        let left = node(level: level - 1, index: (range.lowerBound >> level) << 1)
        let right = node(level: level - 1, index: ((range.lowerBound >> level) << 1) + 1)
        let leftSum = self.sum(node: left, level: level - 1, pieces: pieces, used: &used, allowingGaps: allowingGaps)
        let rightSum =
            right.isEmpty
            ? nil : self.sum(node: right, level: level - 1, pieces: pieces, used: &used, allowingGaps: allowingGaps)
        guard var sum = leftSum else { return allowingGaps ? rightSum : nil }
        if right.isEmpty { return sum }
        guard let other = rightSum else { return allowingGaps ? sum : nil }
        guard other.gradient.count == sum.gradient.count else { return nil }
        // left + right into a fresh array: no copy of the left operand first.
        sum.gradient = [Float](unsafeUninitializedCapacity: sum.gradient.count) { total, initialized in
            sum.gradient.withUnsafeBufferPointer { left in
                other.gradient.withUnsafeBufferPointer { right in
                    for index in left.indices { total[index] = left[index] + right[index] }
                }
            }
            initialized = sum.gradient.count
        }
        sum.blocks = range
        sum.sampleCount += other.sampleCount
        sum.correctCount += other.correctCount
        sum.lossSum += other.lossSum
        return sum
    }

    /// Adds, in place, the leaves of the contiguous run `blocks` along the tree into the maximal nodes
    /// that cover the run (`nodes(covering:)`): the same additions as `sum`, without allocating.
    /// Leaf `blocks.lowerBound + j` is `count` values at `slab + j * count`; each node's sum is left in
    /// the place of its first leaf. Returns the nodes with the slab offsets (in values) of their sums.
    /// Nodes in `summed` already hold their sums in place (a lane added them up early) and are taken
    /// as they are.
    public func sumInPlace(
        _ slab: UnsafeMutablePointer<Float>, count: Int, run blocks: Range<Int>, summed: Set<Range<Int>> = []
    ) -> [(blocks: Range<Int>, offset: Int)] {
        nodes(covering: blocks).map { node in
            sumInPlace(slab - blocks.lowerBound * count, count: count, node: node, level: levelOf(node), summed: summed)
            return (node, (node.lowerBound - blocks.lowerBound) * count)
        }
    }

    /// Leaves addressed by block: leaf b at `base + b * count`.
    private func sumInPlace(
        _ base: UnsafeMutablePointer<Float>, count: Int, node range: Range<Int>, level: Int, summed: Set<Range<Int>>
    ) {
        guard level > 0, !summed.contains(range) else { return }
        let left = node(level: level - 1, index: (range.lowerBound >> level) << 1)
        let right = node(level: level - 1, index: ((range.lowerBound >> level) << 1) + 1)
        sumInPlace(base, count: count, node: left, level: level - 1, summed: summed)
        guard !right.isEmpty else { return }
        sumInPlace(base, count: count, node: right, level: level - 1, summed: summed)
        let total = base + left.lowerBound * count, addend = base + right.lowerBound * count
        for index in 0..<count { total[index] += addend[index] }
    }

    /// The mean gradient of a root sum: each value times 1 / sampleCount (all zeros for no samples).
    /// The one averaging function of every training mode.
    /// Scales in place when the caller hands over the last reference to the gradient.
    public static func mean(of sum: consuming GradientPiece) -> [Float] {
        let scale = sum.sampleCount > 0 ? 1 / Float(sum.sampleCount) : 0
        var gradient = sum.gradient
        sum.gradient = []
        gradient.withUnsafeMutableBufferPointer { values in
            for index in values.indices { values[index] *= scale }
        }
        return gradient
    }
}
