// Training in one process, no sockets: seeded shuffling, batches, the optimizer step and a test
// evaluation after every epoch, reported as `TrainingEvent`s. The two halves of a step are
// separate types so the distributed code reuses them: `BatchGradientComputer` (what a worker
// runs) and `ParameterUpdate` (what the coordinator runs on the averaged gradient).
import ConvNet
import Foundation
import MNIST

/// Seeds derived from the run seed, one stream per purpose, so changing one use never shifts another.
public enum TrainingSeeds {
    /// Initial weights.
    public static func initialisation(_ seed: UInt64) -> UInt64 { SplitMix64.derivedSeed(seed, 1) }
    /// Order of the training set in `epoch` (0-based).
    public static func shuffle(_ seed: UInt64, epoch: Int) -> UInt64 { SplitMix64.derivedSeed(seed, 2, UInt64(epoch)) }
    /// Dropout masks of global step `step` (0-based); each sample's mask also depends on its index in
    /// the training set (`computeSummedGradient`'s keys), so shards reproduce one batch.
    public static func dropout(_ seed: UInt64, step: Int) -> UInt64 {
        SplitMix64.derivedSeed(seed, 3, UInt64(step))
    }
    /// Augmentation shifts in `epoch`; each image's shift also depends on its dataset index.
    public static func augmentation(_ seed: UInt64, epoch: Int) -> UInt64 {
        SplitMix64.derivedSeed(seed, 4, UInt64(epoch))
    }
}

/// The coordinator's half of a step: turns a gradient into a parameter update with the
/// configured optimizer and learning-rate schedule.
public struct ParameterUpdate: Sendable {
    public private(set) var optimizer: Optimizer
    public let schedule: LearningRateSchedule
    public let peakLearningRate: Float
    /// Steps in the whole run (the schedule's length).
    public let totalSteps: Int
    /// Decay per step of `average` (0: no average is kept).
    public let averageDecay: Float
    /// The exponential moving average of the parameters after each update; empty before the first
    /// update or when `averageDecay` is 0. See `model(of:)`.
    public private(set) var average: [Float] = []

    public init(configuration: TrainingConfiguration, parameterCount: Int, totalSteps: Int) {
        optimizer = Optimizer(settings: configuration.optimizerSettings, parameterCount: parameterCount)
        schedule = configuration.schedule
        peakLearningRate = Float(configuration.learningRate)
        averageDecay = Float(configuration.averageDecay)
        self.totalSteps = totalSteps
    }

    /// The weights to evaluate and save: the moving average when one is kept, else `parameters`.
    public func model(of parameters: [Float]) -> [Float] {
        average.isEmpty ? parameters : average
    }

    /// Updates applied so far (0-based index of the next one).
    public var step: Int { optimizer.step }

    /// The learning rate the next update will use.
    public var nextLearningRate: Float {
        schedule.learningRate(peak: peakLearningRate, step: step, totalSteps: totalSteps)
    }

    /// Applies the mean of a summed gradient over `sampleCount` samples; returns the rate used.
    @discardableResult
    public mutating func apply(summedGradient: [Float], sampleCount: Int, to parameters: inout [Float]) -> Float {
        let scale = 1 / Float(max(1, sampleCount))
        return apply(meanGradient: summedGradient.map { $0 * scale }, to: &parameters)
    }

    /// Applies a mean gradient (same layout as `parameters`); returns the rate used.
    @discardableResult
    public mutating func apply(meanGradient: [Float], to parameters: inout [Float]) -> Float {
        let rate = nextLearningRate
        optimizer.apply(gradient: meanGradient, to: &parameters, learningRate: rate)
        updateAverage(parameters)
        return rate
    }

    /// average = d * average + (1 - d) * parameters, with d = min(decay, (1 + t) / (10 + t)) at
    /// update t so that the first updates, far from where training ends, fade quickly.
    private mutating func updateAverage(_ parameters: [Float]) {
        guard averageDecay > 0 else { return }
        guard average.count == parameters.count else {
            average = parameters
            return
        }
        let t = Float(optimizer.step)
        let decay = min(averageDecay, (1 + t) / (10 + t)), keep = 1 - decay
        average.withUnsafeMutableBufferPointer { average in
            parameters.withUnsafeBufferPointer { parameters in
                for index in average.indices { average[index] = decay * average[index] + keep * parameters[index] }
            }
        }
    }
}

/// The worker's half of a step: the summed gradient of some images of a `LabeledImages`,
/// normalised (and optionally shifted) into a buffer that is reused from call to call.
public final class BatchGradientComputer {
    public let network: Network
    private var inputs = [Float]()
    private var spareGradients = [Float]()

    public init(network: Network) { self.network = network }

    /// Zeroes `network.gradients`, then fills them with the gradient of the SUMMED loss over the
    /// images at `indices` (divide by the count, or by the global count, to get a mean).
    ///
    /// - Parameters:
    ///   - dropoutSeed: the step's seed (`TrainingSeeds.dropout(seed, step:)`).
    ///   - keyOffset: sample `images[index]` is known as `keyOffset + index` in the whole training set
    ///     (a worker passes its shard's first index). Its dropout mask depends only on (dropoutSeed,
    ///     key) and its augmentation shift only on (augmentationSeed, key), so a sample gets the same
    ///     randomness whichever process computes it and whatever batch it shares: the shards of a
    ///     global batch reproduce its single-process gradient exactly.
    ///   - augmentationSeed: if given, each image is shifted by up to ±2 pixels each way.
    public func computeSummedGradient<Indices: Collection>(
        images: LabeledImages, indices: Indices, dropoutSeed: UInt64, keyOffset: Int = 0, augmentationSeed: UInt64?
    ) -> BatchStatistics where Indices.Element == Int {
        prepareInputs(images: images, indices: indices, keyOffset: keyOffset, augmentationSeed: augmentationSeed)
        let labels = indices.map { images.labels[$0] }
        // The last result may still be held (a worker keeps its last answer for a resend): compute into
        // the other buffer, which nobody holds any more, instead of copying the held one to zero it.
        swap(&network.gradients, &spareGradients)
        if network.gradients.count != network.parameterCount {
            network.gradients = [Float](repeating: 0, count: network.parameterCount)
        }
        network.zeroGradients()
        return network.accumulateGradients(
            images: inputs, labels: labels, dropoutSeed: dropoutSeed, sampleKeys: indices.map { keyOffset + $0 })
    }

    private func prepareInputs<Indices: Collection>(
        images: LabeledImages, indices: Indices, keyOffset: Int, augmentationSeed: UInt64?
    ) where Indices.Element == Int {
        let rows = images.rows, columns = images.columns, perImage = images.pixelsPerImage
        let needed = indices.count * perImage
        if inputs.count != needed { inputs = [Float](repeating: 0, count: needed) }
        let table = InputNormalization.table
        let background = table[0]
        images.pixels.withUnsafeBufferPointer { pixels in
            inputs.withUnsafeMutableBufferPointer { output in
                table.withUnsafeBufferPointer { table in
                    for (position, index) in indices.enumerated() {
                        let source = index * perImage, target = position * perImage
                        guard let seed = augmentationSeed else {
                            for offset in 0..<perImage { output[target + offset] = table[Int(pixels[source + offset])] }
                            continue
                        }
                        let bits = SplitMix64.finalize(SplitMix64.derivedSeed(seed, UInt64(keyOffset + index)))
                        let shiftX = Int(bits % 5) - 2, shiftY = Int((bits >> 8) % 5) - 2
                        for y in 0..<rows {
                            let fromY = y - shiftY
                            for x in 0..<columns {
                                let fromX = x - shiftX
                                let inside = fromY >= 0 && fromY < rows && fromX >= 0 && fromX < columns
                                output[target + y * columns + x] =
                                    inside ? table[Int(pixels[source + fromY * columns + fromX])] : background
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a finished run hands back.
public struct TrainingResult {
    /// The trained network.
    public let network: Network
    /// One summary per epoch, in order.
    public let epochs: [EpochSummary]
    /// The final network on the test set.
    public let testEvaluation: Evaluation
    /// Seconds spent training (test evaluations excluded).
    public var trainingSeconds: Double { epochs.last?.trainingSeconds ?? 0 }
    /// Final test accuracy in [0, 1].
    public var testAccuracy: Double { testEvaluation.accuracy }
}

/// Trains a network on one machine with the settings of a `TrainingConfiguration`.
public struct SingleProcessTrainer {
    public let configuration: TrainingConfiguration

    /// Validates `configuration` (throws `TrainingConfiguration.ValidationError`).
    public init(configuration: TrainingConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
    }

    /// Steps in one epoch of `trainCount` images (the last batch may be smaller).
    public func stepsPerEpoch(trainCount: Int) -> Int {
        (trainCount + configuration.batchSize - 1) / configuration.batchSize
    }

    /// Runs every epoch, evaluating the test set after each, and reports progress to `onEvent`
    /// on the calling thread.
    public func train(data: MNISTData, onEvent: (TrainingEvent) -> Void = { _ in }) throws -> TrainingResult {
        let configuration = self.configuration
        ComputeThreads.configure(threads: configuration.threads)
        let network = try Network(
            architecture: configuration.preset.architecture, seed: TrainingSeeds.initialisation(configuration.seed))
        let train = data.train
        guard train.count > 0 else {
            throw TrainingConfiguration.ValidationError(flag: "data", message: "the training set is empty")
        }
        guard train.pixelsPerImage == network.inputCount else {
            throw TrainingConfiguration.ValidationError(
                flag: "data",
                message: "images are \(train.rows)x\(train.columns), the model takes \(network.inputCount) pixels")
        }
        let stepsPerEpoch = stepsPerEpoch(trainCount: train.count)
        let totalSteps = stepsPerEpoch * configuration.epochs
        let computer = BatchGradientComputer(network: network)
        var update = ParameterUpdate(
            configuration: configuration, parameterCount: network.parameterCount, totalSteps: totalSteps)
        var progress = TrainingProgress(
            configuration: configuration, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        onEvent(
            progress.started(
                parameterCount: network.parameterCount, trainCount: train.count, testCount: data.test.count))
        let clock = ContinuousClock()
        var evaluation = Evaluation(
            network: network, images: LabeledImages(rows: train.rows, columns: train.columns, pixels: [], labels: []))
        for epoch in 0..<configuration.epochs {
            let order = SplitMix64.permutation(
                count: train.count, seed: TrainingSeeds.shuffle(configuration.seed, epoch: epoch))
            let augmentationSeed =
                configuration.augment ? TrainingSeeds.augmentation(configuration.seed, epoch: epoch) : nil
            let epochStart = clock.now
            for step in 0..<stepsPerEpoch {
                let indices = order[
                    (step * configuration.batchSize)..<min(train.count, (step + 1) * configuration.batchSize)]
                let globalStep = epoch * stepsPerEpoch + step
                let statistics = computer.computeSummedGradient(
                    images: train, indices: indices,
                    dropoutSeed: TrainingSeeds.dropout(configuration.seed, step: globalStep),
                    augmentationSeed: augmentationSeed)
                let rate = update.apply(
                    summedGradient: network.gradients, sampleCount: statistics.count, to: &network.parameters)
                onEvent(
                    .batchCompleted(
                        progress.recordStep(
                            globalStep, epoch: epoch, statistics: statistics, loss: statistics.meanLoss,
                            accuracy: TrainingProgress.accuracy(of: statistics), learningRate: Double(rate),
                            epochSeconds: (clock.now - epochStart).seconds)))
            }
            let epochSeconds = (clock.now - epochStart).seconds
            let evaluationStart = clock.now
            evaluation = network.withParameters(update.model(of: network.parameters)) {
                Evaluation(network: network, images: data.test)
            }
            onEvent(
                .epochCompleted(
                    progress.finishEpoch(
                        epoch, seconds: epochSeconds, testAccuracy: evaluation.accuracy,
                        evaluationSeconds: (clock.now - evaluationStart).seconds)))
        }
        network.parameters = update.model(of: network.parameters)
        return TrainingResult(network: network, epochs: progress.summaries, testEvaluation: evaluation)
    }
}

extension Network {
    /// Runs `body` with `parameters` in place of the network's own, then puts those back.
    func withParameters<T>(_ parameters: [Float], _ body: () throws -> T) rethrows -> T {
        let own = self.parameters
        self.parameters = parameters
        defer { self.parameters = own }
        return try body()
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
