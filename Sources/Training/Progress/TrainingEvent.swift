// What a trainer reports while it runs, as plain values: the CLI renders them as a progress bar,
// log lines or JSON lines. Rendering and rate-limiting are the receiver's business.

/// Progress within an epoch, sent after every optimizer step.
public struct BatchProgress: Sendable, Equatable, Codable {
    /// 1-based epoch.
    public var epoch: Int
    public var epochs: Int
    /// 1-based step within the epoch.
    public var step: Int
    public var stepsPerEpoch: Int
    /// 1-based step over the whole run, and the run's total: for an ETA.
    public var globalStep: Int
    public var totalSteps: Int
    /// Mean loss and accuracy of this batch (dropout active).
    public var loss: Double
    public var accuracy: Double
    /// Learning rate used for this step.
    public var learningRate: Double
    /// Training images per second so far in this epoch.
    public var imagesPerSecond: Double
    /// Seconds of training so far in the run (test evaluations excluded).
    public var trainingSeconds: Double
}

/// Figures for one finished epoch.
public struct EpochSummary: Sendable, Equatable, Codable {
    /// 1-based epoch.
    public var epoch: Int
    public var epochs: Int
    /// Mean training loss and accuracy over the epoch (dropout and augmentation active).
    public var loss: Double
    public var trainAccuracy: Double
    /// Accuracy on the test set after the epoch, in [0, 1].
    public var testAccuracy: Double
    /// Seconds of training in this epoch (test evaluation excluded), and the images/s they imply.
    public var seconds: Double
    public var imagesPerSecond: Double
    /// Seconds of training in the run so far (test evaluations excluded).
    public var trainingSeconds: Double
    /// Seconds the test evaluation took.
    public var evaluationSeconds: Double
}

/// An event of a training run.
public enum TrainingEvent: Sendable, Equatable {
    /// Training is about to start.
    case started(
        model: String, parameterCount: Int, trainCount: Int, testCount: Int, stepsPerEpoch: Int, totalSteps: Int)
    case batchCompleted(BatchProgress)
    case epochCompleted(EpochSummary)
}
