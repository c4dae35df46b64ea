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
    public func train(data: MNISTData, onEvent: (TrainingEvent) -> Void = { _ in }) throws -> TrainingResult {
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
        let stepsPerEpoch = step.plan.stepsPerEpoch
        let computer = MicroBatchComputer(
            network: try Network(architecture: network.architecture, seed: 0), samples: step.samplesInKeyOrder(train),
            firstKey: 0, seed: configuration.seed, augment: configuration.augment, tree: step.tree)
        var progress = TrainingProgress(
            configuration: configuration, stepsPerEpoch: stepsPerEpoch, totalSteps: step.totalSteps)
        onEvent(
            progress.started(
                parameterCount: network.parameterCount, trainCount: train.count, testCount: data.test.count))
        let clock = ContinuousClock()
        var evaluation = Evaluation(
            network: network, images: LabeledImages(rows: train.rows, columns: train.columns, pixels: [], labels: []))
        for epoch in 0..<configuration.epochs {
            let epochStart = clock.now
            for index in 0..<stepsPerEpoch {
                let (result, rate) = step.runLocally(step: epoch * stepsPerEpoch + index, computer: computer)
                onEvent(
                    .batchCompleted(
                        progress.record(
                            step: result.step, epoch: epoch, statistics: result.statistics, learningRate: Double(rate),
                            epochSeconds: (clock.now - epochStart).seconds)))
            }
            let epochSeconds = (clock.now - epochStart).seconds
            let evaluationStart = clock.now
            evaluation = network.withParameters(step.modelParameters) {
                Evaluation(network: network, images: data.test)
            }
            onEvent(
                .epochCompleted(
                    progress.finishEpoch(
                        epoch, seconds: epochSeconds, testAccuracy: evaluation.accuracy,
                        evaluationSeconds: (clock.now - evaluationStart).seconds)))
        }
        network.parameters = step.modelParameters
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
