// The gradients of a step's micro-batches on the samples one node holds: the work of a worker, and of
// the single process (which holds every block). Inputs are normalised (and, when the run augments,
// transformed: `Augmentation`) into a buffer reused from step to step; each micro-batch's gradient is computed by one
// thread into its own slab (`Network.microBatchGradients`) and the micro-batches are added along the
// fixed tree (`StepAssignment.pieces`), so the answer has the same bits on any node with any threads.
import ConvNet
import DataParallel
import MNIST

/// Computes `GradientReport`s for step assignments over a fixed set of samples.
///
/// Not thread-safe: one thread at a time (the network's lanes run inside a call).
public final class MicroBatchComputer {
    public let network: Network
    /// The samples held, shard after shard as they arrived; `segments` says which keys they are.
    public private(set) var samples: LabeledImages
    /// Each shard's keys and the position of its first sample in `samples`.
    private var segments: [(keys: Range<Int>, offset: Int)]
    /// The run's seed and its augmentation (nil: none): they key dropout and the transforms.
    public let seed: UInt64
    public let augmentation: Augmentation?
    /// The tree over the run's micro-batch positions.
    public let tree: GradientTree
    private var inputs = [Float]()
    /// `[micro-batches, parameterCount]`: each micro-batch's gradient, then the tree's sums in place.
    private var gradients = [Float]()

    public init(
        network: Network, samples: LabeledImages, firstKey: Int, seed: UInt64, augmentation: Augmentation?,
        tree: GradientTree
    ) {
        self.network = network
        self.samples = samples
        segments = [(firstKey..<(firstKey + samples.count), 0)]
        self.seed = seed
        self.augmentation = augmentation
        self.tree = tree
    }

    /// Adds the samples of another shard, known as keys `firstKey...`; they must not overlap those held.
    public func add(_ more: LabeledImages, firstKey: Int) {
        let keys = firstKey..<(firstKey + more.count)
        precondition(more.pixelsPerImage == samples.pixelsPerImage, "images of one size")
        guard !segments.contains(where: { $0.keys.overlaps(keys) }) else { return }
        segments.append((keys, samples.count))
        samples = LabeledImages(
            rows: samples.rows, columns: samples.columns, pixels: samples.pixels + more.pixels,
            labels: samples.labels + more.labels)
    }

    /// Where the sample known as `key` is in `samples`, or nil if it is not held.
    public func index(ofKey key: Int) -> Int? {
        segments.first { $0.keys.contains(key) }.map { $0.offset + key - $0.keys.lowerBound }
    }

    /// The assignment's micro-batches at its weights, summed along the tree into the nodes its
    /// blocks cover. A key that is not held gives an answer with no pieces (which the coordinator refuses).
    public func report(for assignment: StepAssignment) -> GradientReport {
        network.parameters = assignment.weights
        let keys = assignment.sampleKeys.map { Int($0) }
        var indices: [Int] = []
        indices.reserveCapacity(keys.count)
        for key in keys {
            guard let index = index(ofKey: key) else { return GradientReport(step: assignment.step, pieces: []) }
            indices.append(index)
        }
        prepareInputs(
            indices: indices, keys: keys, epochSeed: TrainingSeeds.augmentation(seed, epoch: assignment.epoch))
        let labels = indices.map { samples.labels[$0] }
        var ranges: [Range<Int>] = []
        var start = 0
        for microBatch in assignment.microBatches {
            ranges.append(start..<(start + microBatch.sampleCount))
            start += microBatch.sampleCount
        }
        let parameterCount = network.parameterCount
        let needed = assignment.microBatches.count * parameterCount
        if gradients.count < needed { gradients = [Float](repeating: 0, count: needed) }
        // Each lane adds up the tree nodes inside its own micro-batches as soon as it has computed
        // them; what is left of the tree is added below. The same additions, in the same order.
        let runs = assignment.contiguousRuns
        var laneSums = [Range<Int>?](repeating: nil, count: assignment.microBatches.count)
        let statistics = inputs.withUnsafeBufferPointer { images in
            labels.withUnsafeBufferPointer { labels in
                keys.withUnsafeBufferPointer { keys in
                    gradients.withUnsafeMutableBufferPointer { slab in
                        laneSums.withUnsafeMutableBufferPointer { laneSums in
                            network.microBatchGradients(
                                images: images, labels: labels, sampleKeys: keys, microBatches: ranges,
                                dropoutSeed: TrainingSeeds.dropout(seed, step: assignment.step), into: slab,
                                afterLane: { lane in
                                    guard let base = slab.baseAddress else { return }
                                    for (positions, blocks) in runs {
                                        let mine = positions.clamped(to: lane)
                                        guard !mine.isEmpty else { continue }
                                        let first = blocks.lowerBound + mine.lowerBound - positions.lowerBound
                                        let own = first..<(first + mine.count)
                                        let start = mine.lowerBound * parameterCount
                                        for (node, _) in tree.sumInPlace(base + start, count: parameterCount, run: own)
                                        {
                                            laneSums[positions.lowerBound + node.lowerBound - blocks.lowerBound] = node
                                        }
                                    }
                                })
                        }
                    }
                }
            }
        }
        let summed = Set(laneSums.compactMap { $0 })
        // The loss figures go along the tree as pieces; the gradients are added in place in the slab,
        // by the same tree, and each node's sum is copied out once.
        let leaves = zip(assignment.microBatches, statistics).map { microBatch, statistics in
            GradientPiece(
                blocks: microBatch.block..<(microBatch.block + 1), sampleCount: statistics.count,
                correctCount: statistics.correct, lossSum: statistics.lossSum, gradient: [])
        }
        var pieces = assignment.pieces(fromLeaves: leaves, tree: tree)
        var sums: [Range<Int>: Int] = [:]
        gradients.withUnsafeMutableBufferPointer { slab in
            guard let base = slab.baseAddress else { return }
            for (positions, blocks) in assignment.contiguousRuns {
                let start = positions.lowerBound * parameterCount
                for (node, offset) in tree.sumInPlace(
                    base + start, count: parameterCount, run: blocks, summed: summed)
                {
                    sums[node] = start + offset
                }
            }
        }
        for index in pieces.indices {
            guard let offset = sums[pieces[index].blocks] else { continue }
            pieces[index].gradient = Array(gradients[offset..<(offset + parameterCount)])
        }
        return GradientReport(step: assignment.step, pieces: pieces)
    }

    /// Fills `inputs` with the normalised images at `indices`, image i transformed by `augmentation`
    /// as drawn for (epochSeed, keys[i]) when the run augments.
    private func prepareInputs(indices: [Int], keys: [Int], epochSeed: UInt64) {
        let rows = samples.rows, columns = samples.columns, perImage = samples.pixelsPerImage
        let needed = indices.count * perImage
        if inputs.count != needed { inputs = [Float](repeating: 0, count: needed) }
        let augmentation = self.augmentation
        // Each image on its own: any split over threads gives the same bits.
        samples.pixels.withUnsafeBufferPointer { pixels in
            inputs.withUnsafeMutableBufferPointer { output in
                InputNormalization.table.withUnsafeBufferPointer { table in
                    parallelChunks(indices.count, threads: ComputeThreads.kernelThreadCount, minimumChunk: 16) {
                        for position in $0 {
                            let index = indices[position]
                            let source = UnsafeBufferPointer(
                                rebasing: pixels[(index * perImage)..<((index + 1) * perImage)])
                            let target = UnsafeMutableBufferPointer(
                                rebasing: output[(position * perImage)..<((position + 1) * perImage)])
                            guard let augmentation else {
                                for offset in 0..<perImage { target[offset] = table[Int(source[offset])] }
                                continue
                            }
                            augmentation.apply(
                                pixels: source, rows: rows, columns: columns, key: keys[position], epochSeed: epochSeed,
                                table: table, output: target)
                        }
                    }
                }
            }
        }
    }
}
