// A network built from an `Architecture`: its layers, the parameter and gradient slabs, and the
// activation buffers reused from batch to batch. It computes summed-loss gradients and class
// probabilities; it does not choose learning rates or apply updates (see `Optimizer`).
//
// Work is spread over one "lane" per thread, each with its own copy of the layers and buffers.
// Training computes fixed micro-batches, each single-threaded into its own gradient slab, so a
// micro-batch's gradient has the same bits whichever lane computes it and however many lanes
// there are (`microBatchGradients`); the caller adds them in a fixed order. Inference runs fixed
// chunks of `chunkSize` samples, so each sample's output does not depend on the thread count.
//
// Shape letters: N batch, C channels, H W height and width, F flat features, K classes.
import Dispatch

/// Summary of one gradient computation.
public struct BatchStatistics: Sendable, Equatable {
    /// Sum over the samples of the cross-entropy loss (natural log).
    public var lossSum: Double
    /// Samples whose most probable class is their label.
    public var correct: Int
    /// Samples seen.
    public var count: Int

    public init(lossSum: Double = 0, correct: Int = 0, count: Int = 0) {
        self.lossSum = lossSum
        self.correct = correct
        self.count = count
    }

    /// Mean loss per sample (0 when empty).
    public var meanLoss: Double { count > 0 ? lossSum / Double(count) : 0 }

    /// Adds another batch's figures.
    public mutating func add(_ other: BatchStatistics) {
        lossSum += other.lossSum
        correct += other.correct
        count += other.count
    }
}

/// A convolutional network with flat parameter and gradient slabs.
///
/// Not thread-safe: one network is used by one thread at a time (its kernels use several threads
/// internally, see `ComputeThreads`). The slabs have the same layout, described by `layout`.
public final class Network {
    /// What the network was built from.
    public let architecture: Architecture
    /// Name, shape and offset of every tensor in `parameters` and `gradients`.
    public let layout: ParameterLayout
    /// All weights and biases, one slab, laid out by `layout`.
    public var parameters: [Float]
    /// Gradients, laid out exactly like `parameters`; added to by `accumulateGradients`.
    public var gradients: [Float]
    /// Population mean and variance of every batch-normalisation layer's input (each layer's
    /// `[mean C, variance C]` in turn, named by `normalizationLayout`): what inference normalises with.
    /// Not trained: `calibrateNormalization` measures them. Empty without such layers.
    public var normalization: [Float]
    /// Names and shapes of `normalization`'s tensors (PyTorch's `running_mean`, `running_var`).
    public let normalizationLayout: ParameterLayout
    /// Samples each lane processes at a time; larger batches are split so that a chunk's
    /// activations stay in the cache.
    public var chunkSize: Int = 32
    /// Fewest samples per lane: smaller batches use fewer lanes.
    public var minimumLaneSamples: Int = 8

    /// One lane per thread, created as they are needed; lane 0 always exists.
    private var lanes: [Lane]
    /// The layers as they run (after fusion), for tests.
    var laneLayers: [Layer] { lanes[0].layers }
    private let layerOffsets: [Int]

    /// Largest parameter count accepted (1 GiB of Floats), so a damaged architecture in a model
    /// file is refused instead of exhausting memory.
    public static let maximumParameterCount = 1 << 28

    /// Number of trainable values.
    public var parameterCount: Int { layout.count }
    /// Has batch-normalisation layers (and so `normalization` statistics).
    public var hasBatchNormalization: Bool { !normalization.isEmpty }
    /// Values per input sample (C * H * W; 784 for MNIST).
    public var inputCount: Int { architecture.inputShape.reduce(1, *) }
    /// Number of classes (outputs of the last layer).
    public var classCount: Int { lanes[0].layers.last?.outputShape.count ?? 0 }

    /// Builds the network and fills its parameters with seeded He/Glorot-uniform values (biases 0).
    /// The same architecture and seed give bit-identical parameters.
    public init(architecture: Architecture, seed: UInt64) throws {
        let layers = try Network.makeLayers(architecture)
        let layout = ParameterLayout(layers.flatMap { $0.parameterTable })
        guard layout.count <= Network.maximumParameterCount else {
            throw ArchitectureError(
                "\(layout.count) parameters, more than the limit of \(Network.maximumParameterCount)")
        }
        self.architecture = architecture
        self.layout = layout
        var offsets = [Int](), offset = 0
        for layer in layers {
            offsets.append(offset)
            offset += layer.parameterCount
        }
        self.layerOffsets = offsets
        self.lanes = [Lane(layers: layers)]
        let statistics = layers.compactMap { $0 as? BatchNormalization }.flatMap(\.statisticsTable)
        normalizationLayout = ParameterLayout(statistics)
        // Mean 0, variance 1 until calibrated, as PyTorch starts its running statistics.
        normalization = statistics.flatMap { tensor in
            [Float](repeating: tensor.name.hasSuffix("running_var") ? 1 : 0, count: tensor.shape.reduce(1, *))
        }
        self.parameters = [Float](repeating: 0, count: layout.count)
        self.gradients = [Float](repeating: 0, count: layout.count)
        var generator = SplitMix64(seed: seed)
        parameters.withUnsafeMutableBufferPointer { slab in
            guard let base = slab.baseAddress else { return }
            for (layer, offset) in zip(layers, offsets) {
                layer.initialize(parameters: base + offset, generator: &generator)
            }
        }
    }

    /// The layers that run `architecture`, in execution order.
    ///
    /// Two rewrites that change no result: "convolution, relu, maxPool" runs as one fused
    /// `Convolution(pooled: true)`; any other "relu, maxPool" runs as "maxPool, relu" (they commute
    /// exactly, forward and backward, and the swapped order applies relu to a quarter of the values).
    static func makeLayers(_ architecture: Architecture) throws -> [Layer] {
        guard architecture.inputShape.count == 3, architecture.inputShape.allSatisfy({ $0 >= 1 }) else {
            throw ArchitectureError("input shape must be [C, H, W] with positive sizes, got \(architecture.inputShape)")
        }
        try architecture.validateSizes()
        var shape = SampleShape.image(
            architecture.inputShape[0], architecture.inputShape[1], architecture.inputShape[2])
        let described = architecture.layers
        var order = Array(described.enumerated())
        for index in order.indices.dropLast()
        where order[index].element == .relu && order[index + 1].element == .maxPool
            && (index == 0 || !order[index - 1].element.isConvolution)
        {
            order.swapAt(index, index + 1)
        }
        var layers = [Layer]()
        var convolutions = 0, denses = 0, normalizations = 0, statisticsOffset = 0
        var position = 0
        while position < order.count {
            let (index, description) = order[position]
            position += 1
            // Batch normalisation between a layer and its ReLU does not change the initialisation.
            let next = index + 1 < described.count && described[index + 1] == .batchNorm ? index + 2 : index + 1
            let feedsRelu =
                next < described.count
                && (described[next] == .relu
                    || (described[next] == .maxPool && next + 1 < described.count && described[next + 1] == .relu))
            let layer: Layer
            switch description {
            case let .convolution(outputChannels, kernelSize, padding):
                convolutions += 1
                let pooled =
                    index + 2 < described.count && described[index + 1] == .relu && described[index + 2] == .maxPool
                if pooled { position += 2 }
                layer = try Convolution(
                    name: "conv\(convolutions)", input: shape, outputChannels: outputChannels,
                    kernelSize: kernelSize, padding: padding, feedsRelu: feedsRelu, pooled: pooled)
            case .maxPool:
                layer = try MaxPool(input: shape)
            case .relu:
                layer = ReLU(input: shape)
            case .flatten:
                guard !shape.isFlat else { throw ArchitectureError("flatten at layer \(index) follows a flat layer") }
                layer = Flatten(input: shape)
            case let .dense(outputs):
                denses += 1
                layer = try Dense(name: "dense\(denses)", input: shape, outputs: outputs, feedsRelu: feedsRelu)
            case let .dropout(rate):
                layer = try Dropout(input: shape, rate: rate, layerIndex: index)
            case .batchNorm:
                normalizations += 1
                layer = BatchNormalization(
                    name: "bn\(normalizations)", input: shape, statisticsOffset: statisticsOffset)
                statisticsOffset += 2 * shape.channels
            }
            layers.append(layer)
            shape = layer.outputShape
        }
        guard shape.isFlat, shape.count >= 2 else {
            throw ArchitectureError("the last layer must produce flat logits for at least 2 classes (end with dense)")
        }
        guard shape.count <= 256 else { throw ArchitectureError("at most 256 classes (labels are bytes)") }
        // A direct convolution hands the next convolution its output channels last, through a batch
        // normalisation between them if there is one.
        for index in layers.indices.dropLast() {
            guard let producer = layers[index] as? Convolution, producer.isDirect else { continue }
            let normalization = layers[index + 1] as? BatchNormalization
            let next = normalization == nil ? index + 1 : index + 2
            guard next < layers.count, let consumer = layers[next] as? Convolution, !consumer.isDirect else { continue }
            producer.outputChannelsLast = true
            normalization?.channelsLast = true
            consumer.inputChannelsLast = true
        }
        return layers
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        gradients.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// Adds to `gradients` the gradient of the SUMMED cross-entropy loss over `labels.count`
    /// samples, so gradients of shards can be added and divided by the total count.
    ///
    /// - Parameters:
    ///   - images: `[N, C, H, W]` normalised values, `N * inputCount` of them.
    ///   - labels: `[N]` class indices below `classCount`.
    ///   - dropoutSeed: seed for the dropout masks; sample `i` of this call gets a mask that
    ///     depends only on (dropoutSeed, layer, sampleOffset + i).
    ///   - sampleOffset: index of this call's first sample within the global batch. A worker that
    ///     computes samples k..<k+n of a batch with the batch's seed and offset k draws exactly
    ///     the masks a single process would draw for the whole batch.
    /// - Returns: loss sum and correct count, computed with dropout active.
    @discardableResult
    public func accumulateGradients(
        images: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<UInt8>, dropoutSeed: UInt64,
        sampleOffset: Int = 0,
        sampleKeys: UnsafeBufferPointer<Int>? = nil
    ) -> BatchStatistics {
        let count = labels.count
        precondition(images.count >= count * inputCount, "images must hold \(inputCount) values per label")
        precondition(sampleKeys == nil || sampleKeys?.count == count, "one sample key per label")
        guard count > 0, let imageBase = images.baseAddress, let labelBase = labels.baseAddress else {
            return BatchStatistics()
        }
        let plan = lanePlan(count: count)
        var laneStatistics = [BatchStatistics](repeating: BatchStatistics(), count: plan.lanes)
        let parameterCount = self.parameterCount, inputCount = self.inputCount, classCount = self.classCount
        let chunkSize = self.chunkSize, lanes = self.lanes
        parameters.withUnsafeBufferPointer { parameterSlab in
            gradients.withUnsafeMutableBufferPointer { gradientSlab in
                laneStatistics.withUnsafeMutableBufferPointer { statisticsBuffer in
                    let parameterBase = parameterSlab.baseAddress.unsafelyUnwrappedForKernels
                    let gradientBase = gradientSlab.baseAddress.unsafelyUnwrappedForKernels
                    let statisticsBase = statisticsBuffer.baseAddress.unsafelyUnwrappedForKernels
                    // With batch normalisation a chunk is a ghost batch: lanes then take whole chunks, so
                    // that the batches normalised together do not depend on the number of lanes.
                    let chunks = (count + chunkSize - 1) / chunkSize, aligned = !normalization.isEmpty
                    // Lane 0 adds into the slab itself, the others into their own zeroed copy.
                    runLanes(plan) { lane, planned in
                        let samples =
                            aligned
                            ? (chunks * lane / plan.lanes * chunkSize)..<min(
                                count, chunks * (lane + 1) / plan.lanes * chunkSize) : planned
                        let laneGradient: UnsafeMutablePointer<Float>
                        if lane == 0 {
                            laneGradient = gradientBase
                        } else {
                            laneGradient = lanes[lane].gradients.reserve(parameterCount)
                            laneGradient.initialize(repeating: 0, count: parameterCount)
                        }
                        var statistics = BatchStatistics()
                        var first = samples.lowerBound
                        while first < samples.upperBound {
                            let batch = min(chunkSize, samples.upperBound - first)
                            let context = LayerContext(
                                isTraining: true, dropoutSeed: dropoutSeed, firstSample: sampleOffset + first,
                                sampleKeys: sampleKeys?.baseAddress.map { $0 + first }, threads: plan.threadsPerLane)
                            let chunkImages = imageBase + first * inputCount
                            let logits = lanes[lane].forward(
                                images: chunkImages, batch: batch, parameters: parameterBase, offsets: layerOffsets,
                                context: context)
                            let logitGradient = lanes[lane].gradientA.reserve(batch * classCount)  // [N, K]
                            let result = SoftmaxCrossEntropy.lossAndGradient(
                                logits: logits, labels: labelBase + first, logitGradient: logitGradient, batch: batch,
                                classes: classCount)
                            statistics.add(
                                BatchStatistics(lossSum: result.lossSum, correct: result.correct, count: batch))
                            lanes[lane].backward(
                                images: chunkImages, batch: batch, parameters: parameterBase,
                                gradients: laneGradient, offsets: layerOffsets, context: context)
                            first += batch
                        }
                        statisticsBase[lane] = statistics
                    }
                    for lane in 1..<plan.lanes {
                        let laneGradient = lanes[lane].gradients.pointer
                        for index in 0..<parameterCount { gradientBase[index] += laneGradient[index] }
                    }
                }
            }
        }
        var statistics = BatchStatistics()
        for lane in laneStatistics { statistics.add(lane) }
        return statistics
    }

    /// Array form of `accumulateGradients(images:labels:dropoutSeed:)`.
    @discardableResult
    public func accumulateGradients(
        images: [Float], labels: [UInt8], dropoutSeed: UInt64, sampleOffset: Int = 0, sampleKeys: [Int]? = nil
    ) -> BatchStatistics {
        images.withUnsafeBufferPointer { imageBuffer in
            labels.withUnsafeBufferPointer { labelBuffer in
                guard let sampleKeys else {
                    return accumulateGradients(
                        images: imageBuffer, labels: labelBuffer, dropoutSeed: dropoutSeed, sampleOffset: sampleOffset)
                }
                return sampleKeys.withUnsafeBufferPointer { keys in
                    accumulateGradients(
                        images: imageBuffer, labels: labelBuffer, dropoutSeed: dropoutSeed, sampleOffset: sampleOffset,
                        sampleKeys: keys)
                }
            }
        }
    }

    /// Class probabilities `[N, K]` for `count` images `[N, C, H, W]`, dropout off.
    public func probabilities(images: UnsafeBufferPointer<Float>, count: Int) -> [Float] {
        precondition(images.count >= count * inputCount, "images must hold \(inputCount) values per image")
        let classes = classCount, inputCount = self.inputCount, chunkSize = self.chunkSize
        var result = [Float](repeating: 0, count: count * classes)
        guard count > 0, let imageBase = images.baseAddress else { return result }
        // Fixed chunks of `chunkSize`, whole chunks per lane, one thread per lane when there are
        // several: a sample's output then does not depend on the thread count.
        let chunks = (count + chunkSize - 1) / chunkSize
        let plan = lanePlan(count: count)
        let lanes = self.lanes
        let chunkPlan = LanePlan(
            count: chunks, lanes: min(plan.lanes, chunks), threadsPerLane: plan.lanes == 1 ? plan.threadsPerLane : 1)
        normalization.withUnsafeBufferPointer { statisticsSlab in
            parameters.withUnsafeBufferPointer { parameterSlab in
                result.withUnsafeMutableBufferPointer { resultBuffer in
                    let parameterBase = parameterSlab.baseAddress.unsafelyUnwrappedForKernels
                    let resultBase = resultBuffer.baseAddress.unsafelyUnwrappedForKernels
                    let statistics = statisticsSlab.baseAddress
                    runLanes(chunkPlan) { lane, laneChunks in
                        let plan = chunkPlan
                        var first = laneChunks.lowerBound * chunkSize
                        let end = min(count, laneChunks.upperBound * chunkSize)
                        while first < end {
                            let batch = min(chunkSize, end - first)
                            var context = LayerContext(
                                isTraining: false, dropoutSeed: 0, firstSample: first, threads: plan.threadsPerLane)
                            if let statistics { context.normalization = .population(statistics) }
                            let logits = lanes[lane].forward(
                                images: imageBase + first * inputCount, batch: batch, parameters: parameterBase,
                                offsets: layerOffsets, context: context)
                            SoftmaxCrossEntropy.softmax(
                                logits: logits, probabilities: resultBase + first * classes, batch: batch,
                                classes: classes)
                            first += batch
                        }
                    }
                }
            }
        }
        return result
    }

    /// The gradient of the SUMMED cross-entropy loss of each micro-batch, each computed by one thread
    /// into its own zeroed slab, micro-batches spread over the lanes. A micro-batch's result depends
    /// only on its samples, their keys, the parameters and `dropoutSeed`: not on the thread count, nor
    /// on which other micro-batches share the call.
    ///
    /// - Parameters:
    ///   - images: `[N, C, H, W]` normalised values of all micro-batches, one after the other.
    ///   - labels: `[N]` class indices below `classCount`.
    ///   - sampleKeys: `[N]` each sample's key: its dropout mask depends on (dropoutSeed, layer, key).
    ///   - microBatches: the samples of each micro-batch, consecutive ranges of 0..<N.
    ///   - gradients: `[microBatches.count, parameterCount]` (at least): micro-batch i's summed gradient is
    ///     written (not added) at offset `i * parameterCount`.
    ///   - afterLane: called by each lane, on its thread, with the contiguous range of micro-batch
    ///     positions it computed, once they are all written: a place to start adding them up while
    ///     the other lanes still compute. It must touch only those micro-batches' slabs.
    /// - Returns: per micro-batch, its loss sum and correct count (dropout active).
    public func microBatchGradients(
        images: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<UInt8>, sampleKeys: UnsafeBufferPointer<Int>,
        microBatches: [Range<Int>], dropoutSeed: UInt64, into gradientSlab: UnsafeMutableBufferPointer<Float>,
        afterLane: (Range<Int>) -> Void = { _ in }
    ) -> [BatchStatistics] {
        let count = labels.count
        precondition(gradientSlab.count >= microBatches.count * parameterCount, "one gradient slab per micro-batch")
        guard !microBatches.isEmpty else { return [] }
        let gradients = gradientSlab.baseAddress.unsafelyUnwrappedForKernels
        precondition(images.count >= count * inputCount, "images must hold \(inputCount) values per label")
        precondition(sampleKeys.count == count, "one sample key per label")
        precondition(
            microBatches.allSatisfy { $0.lowerBound >= 0 && $0.upperBound <= count }, "micro-batch outside the samples")
        let parameterCount = self.parameterCount, inputCount = self.inputCount, classCount = self.classCount
        // With batch normalisation a micro-batch is one chunk: its "ghost batch".
        let chunkSize = hasBatchNormalization ? Int.max : self.chunkSize
        let lanes = makeLanes(min(ComputeThreads.kernelThreadCount, microBatches.count))
        let layerOffsets = self.layerOffsets
        var statistics = [BatchStatistics](repeating: BatchStatistics(), count: microBatches.count)
        parameters.withUnsafeBufferPointer { parameterSlab in
            statistics.withUnsafeMutableBufferPointer { statisticsList in
                let parameterBase = parameterSlab.baseAddress.unsafelyUnwrappedForKernels
                let imageBase = images.baseAddress.unsafelyUnwrappedForKernels
                let labelBase = labels.baseAddress.unsafelyUnwrappedForKernels
                let keyBase = sampleKeys.baseAddress.unsafelyUnwrappedForKernels
                runLanes(LanePlan(count: microBatches.count, lanes: lanes, threadsPerLane: 1)) { lane, assigned in
                    for index in assigned {
                        let gradientBase = gradients + index * parameterCount
                        gradientBase.update(repeating: 0, count: parameterCount)
                        var summary = BatchStatistics()
                        var first = microBatches[index].lowerBound
                        while first < microBatches[index].upperBound {
                            let batch = min(chunkSize, microBatches[index].upperBound - first)
                            let context = LayerContext(
                                isTraining: true, dropoutSeed: dropoutSeed, firstSample: first,
                                sampleKeys: keyBase + first, threads: 1)
                            let chunkImages = imageBase + first * inputCount
                            let logits = self.lanes[lane].forward(
                                images: chunkImages, batch: batch, parameters: parameterBase, offsets: layerOffsets,
                                context: context)
                            let logitGradient = self.lanes[lane].gradientA.reserve(batch * classCount)  // [N, K]
                            let result = SoftmaxCrossEntropy.lossAndGradient(
                                logits: logits, labels: labelBase + first, logitGradient: logitGradient,
                                batch: batch, classes: classCount)
                            summary.add(BatchStatistics(lossSum: result.lossSum, correct: result.correct, count: batch))
                            self.lanes[lane].backward(
                                images: chunkImages, batch: batch, parameters: parameterBase,
                                gradients: gradientBase, offsets: layerOffsets, context: context)
                            first += batch
                        }
                        statisticsList[index] = summary
                    }
                    afterLane(assigned)
                }
            }
        }
        return statistics
    }

    /// Measures `normalization`, the population mean and variance of each batch-normalisation layer's
    /// input, as PyTorch's `update_bn` does: the network runs over `images` (`[count, C, H, W]`) in
    /// ghost batches of `ghostBatch`, dropout off and each layer normalising by its batch's statistics
    /// as in training; each statistic is the average over the batches of the batch mean and the
    /// unbiased batch variance. Each batch is computed by one thread and the batches are added in
    /// order, so the result has the same bits for any thread count. Does nothing without such layers.
    public func calibrateNormalization(images: UnsafeBufferPointer<Float>, count: Int, ghostBatch: Int = 32) {
        precondition(images.count >= count * inputCount, "images must hold \(inputCount) values per image")
        precondition(ghostBatch > 0, "a ghost batch needs samples")
        guard hasBatchNormalization, count > 0, let imageBase = images.baseAddress else { return }
        let width = normalization.count, inputCount = self.inputCount, layerOffsets = self.layerOffsets
        let batches = (count + ghostBatch - 1) / ghostBatch
        var rows = [Float](repeating: 0, count: batches * width)  // [batches, width]: each batch's own figures
        let lanes = makeLanes(min(ComputeThreads.kernelThreadCount, batches))
        parameters.withUnsafeBufferPointer { parameterSlab in
            rows.withUnsafeMutableBufferPointer { rowSlab in
                let parameterBase = parameterSlab.baseAddress.unsafelyUnwrappedForKernels
                let rowBase = rowSlab.baseAddress.unsafelyUnwrappedForKernels
                runLanes(LanePlan(count: batches, lanes: lanes, threadsPerLane: 1)) { lane, assigned in
                    for index in assigned {
                        let first = index * ghostBatch, batch = min(ghostBatch, count - first)
                        var context = LayerContext(isTraining: false, dropoutSeed: 0, firstSample: first, threads: 1)
                        context.normalization = .recording(rowBase + index * width)
                        _ = self.lanes[lane].forward(
                            images: imageBase + first * inputCount, batch: batch, parameters: parameterBase,
                            offsets: layerOffsets, context: context)
                    }
                }
            }
        }
        var sums = [Double](repeating: 0, count: width)
        for index in 0..<batches {
            for column in 0..<width { sums[column] += Double(rows[index * width + column]) }
        }
        normalization = sums.map { Float($0 / Double(batches)) }
    }

    /// Array form of `probabilities(images:count:)`; `count` is `images.count / inputCount`.
    public func probabilities(images: [Float]) -> [Float] {
        images.withUnsafeBufferPointer { probabilities(images: $0, count: $0.count / inputCount) }
    }

    /// How many values `features` gives per image: the width of the last layer's input.
    public var featureCount: Int { lanes[0].layers.last?.inputShape.count ?? 0 }

    /// What the last layer sees of each image `[N, C, H, W]` (inference, one thread): `[N, featureCount]`,
    /// the network's own description of the image, from which it reads the class.
    public func features(images: [Float]) -> [Float] {
        let count = images.count / inputCount, width = featureCount
        var result = [Float](repeating: 0, count: count * width)
        guard count > 0, lanes[0].layers.count >= 2 else { return result }
        let lane = lanes[0]
        images.withUnsafeBufferPointer { imageSlab in
            normalization.withUnsafeBufferPointer { statisticsSlab in
                parameters.withUnsafeBufferPointer { parameterSlab in
                    let imageBase = imageSlab.baseAddress.unsafelyUnwrappedForKernels
                    let parameterBase = parameterSlab.baseAddress.unsafelyUnwrappedForKernels
                    var first = 0
                    while first < count {
                        let batch = min(chunkSize, count - first)
                        var context = LayerContext(isTraining: false, dropoutSeed: 0, firstSample: first, threads: 1)
                        if let statistics = statisticsSlab.baseAddress {
                            context.normalization = .population(statistics)
                        }
                        _ = lane.forward(
                            images: imageBase + first * inputCount, batch: batch, parameters: parameterBase,
                            offsets: layerOffsets, context: context)
                        let penultimate = lane.activations[lane.layers.count - 2].pointer
                        for index in 0..<(batch * width) { result[first * width + index] = penultimate[index] }
                        first += batch
                    }
                }
            }
        }
        return result
    }

    /// The most probable class of each image `[N, C, H, W]`.
    public func predictions(images: [Float]) -> [Int] {
        let probabilities = probabilities(images: images)
        let classes = classCount
        return (0..<(probabilities.count / classes)).map { n in
            var best = 0
            for k in 1..<classes where probabilities[n * classes + k] > probabilities[n * classes + best] { best = k }
            return best
        }
    }

    // MARK: - Lanes

    /// How a call of `count` samples is spread: `lanes` contiguous parts run at the same time,
    /// each with `threadsPerLane` threads for its kernels.
    private struct LanePlan {
        var count: Int
        var lanes: Int
        var threadsPerLane: Int

        /// Samples of lane `lane`.
        func samples(ofLane lane: Int) -> Range<Int> { (count * lane / lanes)..<(count * (lane + 1) / lanes) }
    }

    /// One lane per thread when every lane gets at least `minimumLaneSamples`; else one lane whose
    /// kernels use all the threads. Creates the lanes that are missing.
    private func lanePlan(count: Int) -> LanePlan {
        let threads = ComputeThreads.kernelThreadCount
        let used = makeLanes(min(threads, max(1, count / max(1, minimumLaneSamples))))
        return LanePlan(count: count, lanes: used, threadsPerLane: used == 1 ? threads : 1)
    }

    /// Creates lanes until there are `count` (at least 1); returns how many there are for use.
    private func makeLanes(_ count: Int) -> Int {
        while lanes.count < count {
            // The same architecture was built once already, so this cannot fail.
            guard let layers = try? Network.makeLayers(architecture) else { break }
            lanes.append(Lane(layers: layers))
        }
        return max(1, min(count, lanes.count))
    }

    /// Runs `body(lane, samples)` for every lane of `plan`, in parallel when there are several.
    private func runLanes(_ plan: LanePlan, _ body: (Int, Range<Int>) -> Void) {
        if plan.lanes == 1 {
            body(0, 0..<plan.count)
            return
        }
        concurrentlyPerform(iterations: plan.lanes) { lane in body(lane, plan.samples(ofLane: lane)) }
    }
}

/// One thread's copy of the layers and their buffers. Lanes share the parameters and run on
/// disjoint parts of a batch at the same time; each keeps the activations of its own chunk.
private final class Lane {
    let layers: [Layer]
    let activations: [Scratch]
    let gradientA = Scratch(), gradientB = Scratch(), inputScratch = Scratch()
    /// Lanes after the first add their parameter gradients here; the network sums them in order.
    let gradients = Scratch()

    init(layers: [Layer]) {
        self.layers = layers
        self.activations = layers.map { _ in Scratch() }
    }

    /// Layer input for the first layer: the images themselves when C = 1, else transposed to CNHW.
    private func networkInput(images: UnsafePointer<Float>, batch: Int) -> UnsafePointer<Float> {
        guard let first = layers.first, first.inputShape.channels > 1 else { return images }
        let channels = first.inputShape.channels
        let plane = first.inputShape.count / channels
        let transposed = inputScratch.reserve(batch * first.inputShape.count)  // [C, N, H, W]
        for n in 0..<batch {
            for c in 0..<channels {
                (transposed + (c * batch + n) * plane).update(from: images + (n * channels + c) * plane, count: plane)
            }
        }
        return UnsafePointer(transposed)
    }

    /// Runs every layer; returns the logits `[N, K]`.
    func forward(
        images: UnsafePointer<Float>, batch: Int, parameters: UnsafePointer<Float>, offsets: [Int],
        context: LayerContext
    ) -> UnsafePointer<Float> {
        var current = networkInput(images: images, batch: batch)
        for (index, layer) in layers.enumerated() {
            let output = activations[index].reserve(batch * layer.outputShape.count)
            layer.forward(
                input: current, output: output, batch: batch, parameters: parameters + offsets[index],
                context: context)
            current = UnsafePointer(output)
        }
        return current
    }

    /// Back-propagates the logit gradient held in `gradientA`, adding into `gradients`.
    func backward(
        images: UnsafePointer<Float>, batch: Int, parameters: UnsafePointer<Float>,
        gradients: UnsafeMutablePointer<Float>, offsets: [Int], context: LayerContext
    ) {
        let input = (layers.first?.inputShape.channels ?? 1) == 1 ? images : UnsafePointer(inputScratch.pointer)
        var outputGradient = gradientA, spare = gradientB
        for index in layers.indices.reversed() {
            let layer = layers[index]
            let layerInput = index == 0 ? input : UnsafePointer(activations[index - 1].pointer)
            let inputGradient: UnsafeMutablePointer<Float>? =
                index == 0 ? nil : spare.reserve(batch * layer.inputShape.count)
            layer.backward(
                outputGradient: outputGradient.pointer, input: layerInput, output: activations[index].pointer,
                inputGradient: inputGradient, parameterGradient: gradients + offsets[index],
                batch: batch, parameters: parameters + offsets[index], context: context)
            swap(&outputGradient, &spare)
        }
    }
}

extension LayerDescription {
    var isConvolution: Bool {
        if case .convolution = self { return true }
        return false
    }

    var isDense: Bool {
        if case .dense = self { return true }
        return false
    }
}
