// Which samples each worker holds and which samples form the global batch of each step.
// The plan is a pure function of (sample count, worker count, batch size, seed), so a run's batches do
// not depend on message timing. Workers never need it: the coordinator sends each worker the local
// indices of its part of the batch. This file holds no data and no I/O.

/// The deterministic sharding and batching of a training run.
///
/// - Worker `w` of `W` holds the contiguous global range `shardRange(worker: w)`; shard sizes differ by
///   at most one sample.
/// - Epoch `e` visits every sample once in the order `permutation(epoch: e)`: with one worker, a
///   Fisher–Yates shuffle driven by SplitMix64 seeded from `seed` and `e`; with several, each shard is
///   shuffled so (in worker order, one generator) and the shards are interleaved in proportion to their
///   sizes, so that every global batch takes an equal share from each worker (within one sample).
///   A synchronous step waits for its slowest worker: equal shares keep them equally busy.
/// - Step `t` belongs to epoch `t / stepsPerEpoch` and takes the next `batchSize` samples of that
///   order (the last batch of an epoch may be smaller).
public struct BatchPlan: Equatable, Sendable {
    public let sampleCount: Int
    public let workerCount: Int
    public let batchSize: Int
    public let seed: UInt64

    public init(sampleCount: Int, workerCount: Int, batchSize: Int, seed: UInt64) {
        precondition(
            sampleCount > 0 && workerCount > 0 && batchSize > 0, "a plan needs samples, workers and a batch size")
        precondition(workerCount <= sampleCount, "every worker needs at least one sample")
        self.sampleCount = sampleCount
        self.workerCount = workerCount
        self.batchSize = batchSize
        self.seed = seed
    }

    /// Steps per epoch: ceil(sampleCount / batchSize).
    public var stepsPerEpoch: Int { (sampleCount + batchSize - 1) / batchSize }

    /// The global indices held by worker `worker`.
    public func shardRange(worker: Int) -> Range<Int> {
        (worker * sampleCount / workerCount)..<((worker + 1) * sampleCount / workerCount)
    }

    /// The worker holding global sample `index`, and the sample's index inside that worker's shard.
    public func owner(ofSample index: Int) -> (worker: Int, localIndex: Int) {
        // Start from the proportional guess and correct it; shard boundaries are floor(w * n / W).
        var worker = min(workerCount - 1, index * workerCount / sampleCount)
        while shardRange(worker: worker).lowerBound > index { worker -= 1 }
        while shardRange(worker: worker).upperBound <= index { worker += 1 }
        return (worker, index - shardRange(worker: worker).lowerBound)
    }

    /// The epoch step `step` belongs to.
    public func epoch(ofStep step: Int) -> Int { step / stepsPerEpoch }

    /// The order in which epoch `epoch` visits the samples: a permutation of 0..<sampleCount.
    public func permutation(epoch: Int) -> [Int] {
        var generator = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15))
        let shards = (0..<workerCount).map { worker in
            Self.shuffled(Array(shardRange(worker: worker)), using: &generator)
        }
        guard workerCount > 1 else { return shards[0] }
        // Interleave: element j of a shard of size s sits at fraction (2j + 1) / 2s of the epoch; merge
        // by that fraction (exactly, by cross-multiplying), ties to the lower worker.
        var positions = [Int](repeating: 0, count: workerCount)
        var order = [Int]()
        order.reserveCapacity(sampleCount)
        while order.count < sampleCount {
            var best = -1
            for worker in 0..<workerCount where positions[worker] < shards[worker].count {
                guard best >= 0 else {
                    best = worker
                    continue
                }
                let mine = (2 * positions[worker] + 1) * shards[best].count
                let theirs = (2 * positions[best] + 1) * shards[worker].count
                if mine < theirs { best = worker }
            }
            order.append(shards[best][positions[best]])
            positions[best] += 1
        }
        return order
    }

    /// A Fisher–Yates shuffle of `values` (from the last element down), drawing from `generator`.
    private static func shuffled(_ values: [Int], using generator: inout SplitMix64) -> [Int] {
        var order = values
        var index = order.count - 1
        while index > 0 {
            let other = Int(generator.next(below: UInt64(index + 1)))
            order.swapAt(index, other)
            index -= 1
        }
        return order
    }

    /// The global indices of step `step`'s batch, given that epoch's permutation.
    public func globalBatch(step: Int, permutation: [Int]) -> ArraySlice<Int> {
        let start = (step % stepsPerEpoch) * batchSize
        return permutation[start..<min(start + batchSize, sampleCount)]
    }

    /// The global indices of step `step`'s batch (computes the epoch's permutation).
    public func globalBatch(step: Int) -> [Int] {
        Array(globalBatch(step: step, permutation: permutation(epoch: epoch(ofStep: step))))
    }

    /// For each worker, the shard-local indices of its samples in `batch`, in batch order.
    public func localAssignments<Batch: Sequence>(of batch: Batch) -> [[UInt32]] where Batch.Element == Int {
        var assignments = [[UInt32]](repeating: [], count: workerCount)
        for index in batch {
            let (worker, local) = owner(ofSample: index)
            assignments[worker].append(UInt32(local))
        }
        return assignments
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (Steele, Lea, Flood 2014). Fixed here forever
/// so that a seed reproduces the same batches on every platform and release.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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
