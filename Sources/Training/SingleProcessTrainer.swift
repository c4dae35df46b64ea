// Training in one process, no sockets: the same `TrainingStep` as the coordinator's, with every
// micro-batch computed here, and a test evaluation after every epoch, reported as `TrainingEvent`s.
import ConvNet
import DataParallel
import Foundation
import MNIST

/// What a finished run hands back.
public struct TrainingResult {
    /// The trained network.
    public let network: Network
    /// One summary per epoch, in order.
    public let epochs: [EpochSummary]
    /// The final network on the test set.
    public let testEvaluation: Evaluation
    /// The run's final state as a checkpoint (nil when the run kept no checkpoints): kept if the model
    /// cannot be written.
    public var finalState: Checkpoint?
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
        BatchPlan(sampleCount: max(1, trainCount), batchSize: configuration.batchSize, seed: configuration.seed)
            .stepsPerEpoch
    }

    /// Runs every epoch, evaluating the test set after each, and reports progress to `onEvent`
    /// on the calling thread.
    ///
    /// - Parameters:
    ///   - checkpoints: where and how often to write a checkpoint, and the one to continue from (its
    ///     configuration and data already checked by the caller, `Checkpoint.mismatch`). Nil: none.
    ///   - stopReason: asked between steps; a reason ends the run after writing a checkpoint (when
    ///     `checkpoints` is given) by throwing `TrainingInterrupted`.
    public func train(
        data: MNISTData, checkpoints: CheckpointPolicy? = nil, onEvent: (TrainingEvent) -> Void = { _ in },
        stopReason: () -> String? = { nil }
    ) throws -> TrainingResult {
        let configuration = self.configuration
        ComputeThreads.configure(threads: configuration.threads)
        let train = data.train
        guard train.count > 0 else {
            throw TrainingConfiguration.ValidationError(flag: "data", message: "the training set is empty")
        }
        let step = try TrainingStep(configuration: configuration, sampleCount: train.count)
        let network = step.network
        guard train.pixelsPerImage == network.inputCount else {
            throw TrainingConfiguration.ValidationError(
                flag: "data",
                message: "images are \(train.rows)x\(train.columns), the model takes \(network.inputCount) pixels")
        }
        if let resume = checkpoints?.resume { step.restore(resume) }
        let fingerprint = checkpoints.map { $0.dataFingerprint ?? Checkpoint.fingerprint(of: train) } ?? ""
        let calibration = step.calibrationImages(train)
        // The model as it stands, built (calibrated and folded) once per step reached: the checkpoint at
        // the end of an epoch, its evaluation and the final result share it.
        var built: (step: Int, network: Network)?
        func inferenceModel() throws -> Network {
            if let built, built.step == step.stepsDone { return built.network }
            let network = try step.inferenceModel(calibration: calibration)
            built = (step.stepsDone, network)
            return network
        }
        func writeCheckpoint() throws {
            guard let checkpoints else { return }
            try step.checkpoint(dataFingerprint: fingerprint).write(
                to: checkpoints.url, model: try inferenceModel())
            onEvent(.checkpointWritten(step: step.stepsDone, path: checkpoints.url.path))
        }
        let stepsPerEpoch = step.plan.stepsPerEpoch
        let computer = MicroBatchComputer(
            network: try Network(architecture: network.architecture, seed: 0), samples: step.samplesInKeyOrder(train),
            firstKey: 0, seed: configuration.seed, augmentation: configuration.augmentation,
            tree: step.tree)
        var progress = TrainingProgress(
            configuration: configuration, stepsPerEpoch: stepsPerEpoch, totalSteps: step.totalSteps)
        onEvent(
            progress.started(
                parameterCount: network.parameterCount, trainCount: train.count, testCount: data.test.count))
        let clock = ContinuousClock()
        var evaluation: Evaluation?
        let every = checkpoints?.everySteps ?? stepsPerEpoch
        for epoch in (step.stepsDone / stepsPerEpoch)..<configuration.epochs {
            let epochStart = clock.now
            for index in (step.stepsDone - epoch * stepsPerEpoch)..<stepsPerEpoch {
                if let reason = stopReason() {
                    try writeCheckpoint()
                    throw TrainingInterrupted(
                        reason: reason, step: step.stepsDone, totalSteps: step.totalSteps, checkpoint: checkpoints?.url)
                }
                let (result, rate) = step.runLocally(step: epoch * stepsPerEpoch + index, computer: computer)
                onEvent(
                    .batchCompleted(
                        progress.record(
                            step: result.step, epoch: epoch, statistics: result.statistics, learningRate: Double(rate),
                            epochSeconds: (clock.now - epochStart).seconds)))
                onEvent(
                    .modelUpdated(
                        ModelSnapshot(
                            step: step.stepsDone, architecture: network.architecture, parameters: step.modelParameters,
                            calibration: calibration)))
                if step.stepsDone % every == 0, step.stepsDone < step.totalSteps {
                    // A failed periodic checkpoint (a full disk, a folder gone) costs no training: the
                    // previous one is kept, and the run goes on.
                    do { try writeCheckpoint() } catch { checkpoints?.onWriteFailure(step.stepsDone, error) }
                }
            }
            let epochSeconds = (clock.now - epochStart).seconds
            let evaluationStart = clock.now
            let evaluated = Evaluation(network: try inferenceModel(), images: data.test)
            evaluation = evaluated
            onEvent(.evaluated(epoch: epoch + 1, evaluated))
            onEvent(
                .epochCompleted(
                    progress.finishEpoch(
                        epoch, seconds: epochSeconds, testAccuracy: evaluated.accuracy,
                        evaluationSeconds: (clock.now - evaluationStart).seconds)))
        }
        let finalState = checkpoints.map { _ in step.checkpoint(dataFingerprint: fingerprint) }
        let model = try inferenceModel()
        return TrainingResult(
            network: model, epochs: progress.summaries,
            testEvaluation: evaluation ?? Evaluation(network: model, images: data.test), finalState: finalState)
    }
}

/// Where a run writes its checkpoints, how often, and the one it continues from.
public struct CheckpointPolicy {
    public var url: URL
    /// Steps between checkpoints; nil: once per epoch. A checkpoint is also written when the run is
    /// stopped.
    public var everySteps: Int?
    /// The checkpoint to continue from, if any.
    public var resume: Checkpoint?
    /// The training data's fingerprint, when the caller has it already (`Checkpoint.fingerprint`).
    public var dataFingerprint: String?
    /// Told when a periodic checkpoint could not be written after a step (the run goes on).
    public var onWriteFailure: (_ step: Int, _ error: Error) -> Void = { _, _ in }

    public init(url: URL, everySteps: Int? = nil, resume: Checkpoint? = nil, dataFingerprint: String? = nil) {
        self.url = url
        self.everySteps = everySteps.map { max(1, $0) }
        self.resume = resume
        self.dataFingerprint = dataFingerprint
    }
}

/// A run stopped before its last step (a signal, a stop request); its state is in `checkpoint`.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public var reason: String
    /// Steps done when it stopped, of `totalSteps`.
    public var step: Int
    public var totalSteps: Int
    /// Where the checkpoint was written (nil: none was kept).
    public var checkpoint: URL?

    public var description: String {
        "\(reason) after step \(step) of \(totalSteps)"
            + (checkpoint.map { "; the checkpoint \($0.path) holds the run: the same command continues it" } ?? "")
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
