// Which samples form each step's global batch, cut into fixed micro-batches, and which samples each
// worker holds. The plan is a pure function of (sample count, batch size, seed): it never depends on
// the worker count, the thread count or message timing, which is what makes a run's model file the
// same whatever executes it. This file holds no data and no I/O.

/// The deterministic blocks, micro-batches and shards of a training run.
///
/// - **Layout.** The training set is permuted once (`layoutOrder`, a Fisher–Yates shuffle seeded by
///   `seed`) and the permuted sequence is cut into `blockCount` contiguous **blocks**. A sample is
///   known everywhere by its **key**, its position in that sequence (0..<sampleCount); dropout and
///   augmentation are keyed by it, so a sample draws the same randomness wherever it is computed.
/// - **Micro-batches.** The global batch of `batchSize` samples is cut into `blockCount =
///   ceil(batchSize / microBatchSize)` micro-batches; micro-batch b has `microBatchSize(b)` samples
///   (sizes differ by at most one) and always comes from block b, whose size is in proportion.
/// - **Epochs.** In epoch e, block b's samples are visited in a Fisher–Yates order seeded by
///   (seed, e, b); step s of the epoch takes the next `microBatchSize(b)` of them (the last step of an
///   epoch may take fewer, or none). So the composition of every batch depends on seed, epoch and
///   step only.
/// - **Shards.** Of W workers (1 ≤ W ≤ blockCount), worker w joins with the contiguous blocks
///   `shardBlocks(worker: w, of: W)`, a contiguous range of keys; when membership changes, whole blocks
///   move (the coordinator decides where), and a step may ask any holder of a block for its micro-batch.
public struct BatchPlan: Equatable, Sendable {
    /// Samples per micro-batch (at most): each is computed single-threaded into its own buffer. Small
    /// enough that a micro-batch's activations stay in a core's cache, large enough that the
    /// per-micro-batch zeroing and tree addition of the gradient cost little.
    public static let defaultMicroBatchSize = 32

    public let sampleCount: Int
    public let batchSize: Int
    public let seed: UInt64
    /// Micro-batches per global batch, and blocks of the training set: ceil(batchSize / microBatchSize).
    public let blockCount: Int

    public init(sampleCount: Int, batchSize: Int, seed: UInt64, microBatchSize: Int = BatchPlan.defaultMicroBatchSize) {
        precondition(sampleCount > 0 && batchSize > 0 && microBatchSize > 0, "a plan needs samples and a batch size")
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        self.seed = seed
        blockCount = min(sampleCount, (batchSize + microBatchSize - 1) / microBatchSize)
    }

    /// The first sample of micro-batch `block` within the global batch: floor(batchSize · block / blockCount).
    private func batchBoundary(_ block: Int) -> Int { batchSize * block / blockCount }

    /// Samples of block `block`'s micro-batch in a full step.
    public func microBatchSize(block: Int) -> Int { batchBoundary(block + 1) - batchBoundary(block) }

    /// The keys of block `block`: [floor(n · m₀ / B), floor(n · m₁ / B)) with m the batch boundaries.
    public func blockRange(_ block: Int) -> Range<Int> {
        let lower = sampleCount * batchBoundary(block) / batchSize
        let upper = sampleCount * batchBoundary(block + 1) / batchSize
        return lower..<upper
    }

    /// Steps per epoch: enough for every block to be visited once.
    public var stepsPerEpoch: Int {
        (0..<blockCount).map { block in
            let size = blockRange(block).count, take = microBatchSize(block: block)
            return (size + take - 1) / take
        }.max() ?? 1
    }

    /// The epoch step `step` belongs to.
    public func epoch(ofStep step: Int) -> Int { step / stepsPerEpoch }

    /// The blocks worker `worker` of `workerCount` holds: [floor(K·w/W), floor(K·(w+1)/W)).
    public func shardBlocks(worker: Int, of workerCount: Int) -> Range<Int> {
        precondition(workerCount >= 1 && workerCount <= blockCount && (0..<workerCount).contains(worker))
        return (blockCount * worker / workerCount)..<(blockCount * (worker + 1) / workerCount)
    }

    /// The keys a run of blocks covers.
    public func keyRange(blocks: Range<Int>) -> Range<Int> {
        blocks.isEmpty ? 0..<0 : blockRange(blocks.lowerBound).lowerBound..<blockRange(blocks.upperBound - 1).upperBound
    }

    /// `layoutOrder[key]` is the index in the training set of the sample known as `key`.
    public var layoutOrder: [Int] {
        var generator = SplitMix64(seed: SplitMix64.derivedSeed(seed, 0x4C41_594F_5554))  // "LAYOUT"
        return Self.shuffled(Array(0..<sampleCount), using: &generator)
    }

    /// The order in which epoch `epoch` visits block `block`: its keys, shuffled.
    public func blockOrder(epoch: Int, block: Int) -> [Int] {
        var generator = SplitMix64(seed: SplitMix64.derivedSeed(seed, UInt64(epoch), UInt64(block)))
        return Self.shuffled(Array(blockRange(block)), using: &generator)
    }

    /// The keys of every block's micro-batch in step `step` (`[blockCount]` lists, each in visiting
    /// order), given that epoch's `blockOrder`s.
    public func microBatches(step: Int, orders: [[Int]]) -> [ArraySlice<Int>] {
        let position = step % stepsPerEpoch
        return (0..<blockCount).map { block in
            let take = microBatchSize(block: block), order = orders[block]
            let start = min(order.count, position * take)
            return order[start..<min(order.count, start + take)]
        }
    }

    /// The keys of every block's micro-batch in step `step` (computes the epoch's orders).
    public func microBatches(step: Int) -> [[Int]] {
        let epoch = epoch(ofStep: step)
        let orders = (0..<blockCount).map { blockOrder(epoch: epoch, block: $0) }
        return microBatches(step: step, orders: orders).map(Array.init)
    }

    /// The assignment of step `step` for the micro-batches of `blocks` (in increasing order), given the
    /// step's `microBatches`: the one way both the coordinator and a single process turn a step into work.
    public func assignment<Blocks: Sequence<Int>>(
        step: Int, blocks: Blocks, microBatches: [ArraySlice<Int>], weights: [Float]
    ) -> StepAssignment {
        var keys: [UInt32] = []
        var parts: [MicroBatch] = []
        for block in blocks {
            keys.append(contentsOf: microBatches[block].map { UInt32($0) })
            parts.append(MicroBatch(block: block, sampleCount: microBatches[block].count))
        }
        return StepAssignment(
            step: step, epoch: epoch(ofStep: step), weights: weights, sampleKeys: keys, microBatches: parts)
    }

    /// The keys of the blocks `blocks`, as contiguous runs (one per run of consecutive blocks).
    public func keyRuns<Blocks: Sequence<Int>>(blocks: Blocks) -> [(blocks: Range<Int>, keys: Range<Int>)] {
        var runs: [(blocks: Range<Int>, keys: Range<Int>)] = []
        for block in blocks.sorted() {
            if let last = runs.last, last.blocks.upperBound == block {
                runs[runs.count - 1] = (
                    last.blocks.lowerBound..<(block + 1), last.keys.lowerBound..<blockRange(block).upperBound
                )
            } else {
                runs.append((block..<(block + 1), blockRange(block)))
            }
        }
        return runs
    }

    /// A Fisher–Yates shuffle of `values` (from the last element down), drawing from `generator`.
    static func shuffled(_ values: [Int], using generator: inout SplitMix64) -> [Int] {
        var order = values
        var index = order.count - 1
        while index > 0 {
            let other = Int(generator.next(below: UInt64(index + 1)))
            order.swapAt(index, other)
            index -= 1
        }
        return order
    }
}

/// The micro-batches of successive steps, with each epoch's block orders computed once.
public struct StepBatches: Sendable {
    public let plan: BatchPlan
    private var epoch = -1
    private var orders: [[Int]] = []

    public init(plan: BatchPlan) { self.plan = plan }

    /// The keys of every block's micro-batch in step `step` (`plan.microBatches(step:orders:)`).
    public mutating func microBatches(step: Int) -> [ArraySlice<Int>] {
        let epoch = plan.epoch(ofStep: step)
        if epoch != self.epoch {
            orders = (0..<plan.blockCount).map { plan.blockOrder(epoch: epoch, block: $0) }
            self.epoch = epoch
        }
        return plan.microBatches(step: step, orders: orders)
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (Steele, Lea, Flood 2014). Fixed here forever
/// so that a seed reproduces the same batches on every platform and release.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// The SplitMix64 output function: a bijective mix of 64 bits.
    static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seed derived from several integers: h = 0x6A09E667F3BCC908, then for each part
    /// h = finalize(h ^ finalize(part + 0x9E3779B97F4A7C15)). The same function as ConvNet's.
    static func derivedSeed(_ parts: UInt64...) -> UInt64 {
        var hash: UInt64 = 0x6A09_E667_F3BC_C908
        for part in parts { hash = finalize(hash ^ finalize(part &+ 0x9E37_79B9_7F4A_7C15)) }
        return hash
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.finalize(state)
    }

    /// A uniform value in 0..<bound (rejection sampling, no modulo bias).
    mutating func next(below bound: UInt64) -> UInt64 {
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let value = next()
            if value < limit { return value % bound }
        }
    }
}
