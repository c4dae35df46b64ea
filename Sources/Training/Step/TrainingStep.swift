// One training step for every mode: given the weights and a global batch, the micro-batches'
// gradients are added along the fixed tree, averaged (`StepResult`), and the optimizer and the moving
// average applied. The single process computes every micro-batch itself; the coordinator gathers
// them from workers; both finish with `TrainingStep.apply`. Also the seeds of a run and the optimizer
// with its schedule and moving average.
import ConvNet
import DataParallel
import MNIST

/// Seeds derived from the run seed, one stream per purpose, so changing one use never shifts another.
public enum TrainingSeeds {
    /// Initial weights.
    public static func initialisation(_ seed: UInt64) -> UInt64 { SplitMix64.derivedSeed(seed, 1) }
    /// Dropout masks of global step `step` (0-based); each sample's mask also depends on its key
    /// (`BatchPlan`), so a sample draws the same mask on whichever node computes it.
    public static func dropout(_ seed: UInt64, step: Int) -> UInt64 {
        SplitMix64.derivedSeed(seed, 3, UInt64(step))
    }
    /// Augmentation shifts in `epoch`; each image's shift also depends on its key (`BatchPlan`).
    public static func augmentation(_ seed: UInt64, epoch: Int) -> UInt64 {
        SplitMix64.derivedSeed(seed, 4, UInt64(epoch))
    }
}

/// The optimizer, its learning-rate schedule and the moving average of the weights.
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

    /// Puts back the optimizer's state and the moving average of a checkpoint taken after `step` updates.
    mutating func restore(firstMoment: [Float], secondMoment: [Float], step: Int, average: [Float]) {
        optimizer.firstMoment = firstMoment
        optimizer.secondMoment = secondMoment
        optimizer.step = step
        self.average = average
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

/// The state of a run that a step changes (weights, optimizer, moving average) and the plan that
/// says what each step computes. Used by the single process and the coordinator alike.
public final class TrainingStep {
    public let configuration: TrainingConfiguration
    /// The run's blocks, micro-batches and epochs.
    public let plan: BatchPlan
    /// The order in which micro-batch gradients are added.
    public let tree: GradientTree
    /// The network whose `parameters` are the weights being trained.
    public let network: Network
    public private(set) var update: ParameterUpdate
    private var batches: StepBatches

    /// A fresh run over `sampleCount` training samples (validate `configuration` first).
    public init(configuration: TrainingConfiguration, sampleCount: Int) throws {
        self.configuration = configuration
        plan = BatchPlan(sampleCount: sampleCount, batchSize: configuration.batchSize, seed: configuration.seed)
        tree = GradientTree(blockCount: plan.blockCount)
        batches = StepBatches(plan: plan)
        network = try Network(
            architecture: configuration.preset.architecture, seed: TrainingSeeds.initialisation(configuration.seed))
        update = ParameterUpdate(
            configuration: configuration, parameterCount: network.parameterCount,
            totalSteps: plan.stepsPerEpoch * configuration.epochs)
    }

    /// Steps in the whole run.
    public var totalSteps: Int { plan.stepsPerEpoch * configuration.epochs }

    /// The weights to evaluate and save: the moving average when one is kept, else the weights.
    public var modelParameters: [Float] { update.model(of: network.parameters) }

    /// The learning rate the next `apply` will use.
    public var nextLearningRate: Float { update.nextLearningRate }

    /// Steps applied so far.
    public var stepsDone: Int { update.step }

    /// Training images that calibrate batch normalisation for inference (`Network.calibrateNormalization`).
    public static let calibrationSampleCount = 2048

    /// The normalised images, without augmentation, of the first `calibrationSampleCount` keys of
    /// `training` (key order, `plan.layoutOrder`): the same on the single process and the coordinator.
    /// Empty when the network has no batch normalisation.
    public func calibrationImages(_ training: LabeledImages) -> [Float] {
        guard network.hasBatchNormalization else { return [] }
        let perImage = training.pixelsPerImage
        var images: [Float] = []
        images.reserveCapacity(min(training.count, Self.calibrationSampleCount) * perImage)
        for sample in plan.layoutOrder.prefix(Self.calibrationSampleCount) {
            images += InputNormalization.normalized(
                Array(training.pixels[(sample * perImage)..<((sample + 1) * perImage)]))
        }
        return images
    }

    /// The model to evaluate and save (`modelParameters`) as a network of its own; with batch
    /// normalisation, calibrated on `calibration` (`calibrationImages`) and folded, so it is a plain network.
    public func inferenceModel(calibration: [Float]) throws -> Network {
        try Self.inferenceModel(
            architecture: network.architecture, parameters: modelParameters, calibration: calibration)
    }

    /// `inferenceModel(calibration:)` for any architecture and parameters.
    public static func inferenceModel(
        architecture: Architecture, parameters: [Float], calibration: [Float]
    ) throws -> Network {
        let model = try Network(architecture: architecture, seed: 0)
        model.parameters = parameters
        guard model.hasBatchNormalization else { return model }
        calibration.withUnsafeBufferPointer {
            model.calibrateNormalization(images: $0, count: $0.count / model.inputCount)
        }
        return try model.folded()
    }

    /// Everything a resumed run needs to continue exactly from here.
    public func checkpoint(dataFingerprint: String) -> Checkpoint {
        Checkpoint(
            step: update.step, configuration: configuration, dataFingerprint: dataFingerprint,
            weights: network.parameters, firstMoment: update.optimizer.firstMoment,
            secondMoment: update.optimizer.secondMoment, average: update.average)
    }

    /// Continues from `checkpoint` (whose configuration the caller has checked against this run's).
    public func restore(_ checkpoint: Checkpoint) {
        network.parameters = checkpoint.weights
        update.restore(
            firstMoment: checkpoint.firstMoment, secondMoment: checkpoint.secondMoment, step: checkpoint.step,
            average: checkpoint.average)
    }

    /// Applies a finished step's mean gradient with the optimizer, then updates the moving average.
    /// Returns the learning rate used.
    @discardableResult
    public func apply(_ result: StepResult) -> Float {
        update.apply(meanGradient: result.averagedGradient, to: &network.parameters)
    }

    /// The samples of `training` in key order (`plan.layoutOrder`): what the node holding every
    /// block computes on.
    public func samplesInKeyOrder(_ training: LabeledImages) -> LabeledImages {
        let order = plan.layoutOrder, perImage = training.pixelsPerImage
        var pixels = [UInt8](repeating: 0, count: training.pixels.count)
        for (key, sample) in order.enumerated() {
            pixels[(key * perImage)..<((key + 1) * perImage)] =
                training.pixels[(sample * perImage)..<((sample + 1) * perImage)]
        }
        return LabeledImages(
            rows: training.rows, columns: training.columns, pixels: pixels, labels: order.map { training.labels[$0] })
    }

    /// The single-process step `step`: every micro-batch computed by `computer` (which holds every
    /// block, `samplesInKeyOrder`), added along the tree, averaged and applied. Returns the result
    /// and the learning rate used.
    public func runLocally(step: Int, computer: MicroBatchComputer) -> (result: StepResult, learningRate: Float) {
        let epoch = plan.epoch(ofStep: step)
        let assignment = plan.assignment(
            step: step, blocks: 0..<plan.blockCount, microBatches: batches.microBatches(step: step),
            weights: network.parameters)
        let report = computer.report(for: assignment)
        let result = StepResult(
            step: step, epoch: epoch, reports: [consume report], tree: tree, parameterCount: network.parameterCount)
        return (result, apply(result))
    }
}

extension StepResult {
    /// The step's loss sum, correct count and sample count.
    public var statistics: BatchStatistics {
        BatchStatistics(lossSum: lossSum, correct: correctCount, count: sampleCount)
    }
}
