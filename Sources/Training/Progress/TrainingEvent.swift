// What a trainer reports while it runs, as plain values: the CLI renders them as a progress bar,
// log lines or JSON lines, and the dashboard shows them. Rendering and rate-limiting are the receiver's
// business; every event is delivered on the training thread, so a receiver must return quickly.
import ConvNet

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

    public init(
        epoch: Int, epochs: Int, step: Int, stepsPerEpoch: Int, globalStep: Int, totalSteps: Int, loss: Double,
        accuracy: Double, learningRate: Double, imagesPerSecond: Double, trainingSeconds: Double
    ) {
        self.epoch = epoch
        self.epochs = epochs
        self.step = step
        self.stepsPerEpoch = stepsPerEpoch
        self.globalStep = globalStep
        self.totalSteps = totalSteps
        self.loss = loss
        self.accuracy = accuracy
        self.learningRate = learningRate
        self.imagesPerSecond = imagesPerSecond
        self.trainingSeconds = trainingSeconds
    }
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

    public init(
        epoch: Int, epochs: Int, loss: Double, trainAccuracy: Double, testAccuracy: Double, seconds: Double,
        imagesPerSecond: Double, trainingSeconds: Double, evaluationSeconds: Double
    ) {
        self.epoch = epoch
        self.epochs = epochs
        self.loss = loss
        self.trainAccuracy = trainAccuracy
        self.testAccuracy = testAccuracy
        self.seconds = seconds
        self.imagesPerSecond = imagesPerSecond
        self.trainingSeconds = trainingSeconds
        self.evaluationSeconds = evaluationSeconds
    }
}

/// The weights to evaluate (the moving average) after a step, for a live view such as the dashboard's
/// draw box. Cheap to make and to drop: the arrays are shared with the trainer, not copied (a receiver
/// that keeps one costs the trainer one copy at its next update).
public struct ModelSnapshot: Sendable, Equatable {
    /// Steps applied.
    public var step: Int
    public var architecture: Architecture
    public var parameters: [Float]
    /// The images batch normalisation is calibrated on (`TrainingStep.calibrationImages`).
    public var calibration: [Float]

    public init(step: Int, architecture: Architecture, parameters: [Float], calibration: [Float]) {
        self.step = step
        self.architecture = architecture
        self.parameters = parameters
        self.calibration = calibration
    }

    /// The model as a network of its own: calibrated and folded, as it would be evaluated and saved.
    public func network() throws -> Network {
        try TrainingStep.inferenceModel(architecture: architecture, parameters: parameters, calibration: calibration)
    }
}

/// An event of a training run.
public enum TrainingEvent: Sendable, Equatable {
    /// Training is about to start.
    case started(
        model: String, parameterCount: Int, trainCount: Int, testCount: Int, stepsPerEpoch: Int, totalSteps: Int)
    case batchCompleted(BatchProgress)
    /// The weights after the step just reported by `batchCompleted`.
    case modelUpdated(ModelSnapshot)
    /// The test evaluation of the 1-based `epoch`, in full; `epochCompleted` follows with its summary.
    case evaluated(epoch: Int, Evaluation)
    case epochCompleted(EpochSummary)
    /// A checkpoint holding `step` steps was written to `path`.
    case checkpointWritten(step: Int, path: String)
}
