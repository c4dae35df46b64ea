// The figures behind a run's `TrainingEvent`s, kept in one place for both trainers: the single-process
// trainer and the distributed run (`ProgressTracker`) hand it each step's statistics and each epoch's
// timings, and it builds the events and keeps the epoch summaries. Measuring time (which clock, what
// counts as training time) stays with each trainer, as does anything only one of them reports.
import ConvNet

/// A run's training statistics and seconds so far, and the `TrainingEvent` values made from them.
struct TrainingProgress {
    let model: String
    let epochs: Int
    let stepsPerEpoch: Int
    let totalSteps: Int
    /// One summary per finished epoch, in order.
    private(set) var summaries: [EpochSummary] = []
    /// Seconds of training in the finished epochs (test evaluations excluded).
    private(set) var trainingSeconds = 0.0
    /// The statistics of the current epoch's steps so far.
    private(set) var epochStatistics = BatchStatistics()
    /// Epochs whose training is closed and whose evaluation has not come yet: their statistics,
    /// seconds, and the run's training seconds when they closed.
    private var trained: [Int: (BatchStatistics, Double, Double)] = [:]

    init(configuration: TrainingConfiguration, stepsPerEpoch: Int, totalSteps: Int) {
        model = configuration.model
        epochs = configuration.epochs
        self.stepsPerEpoch = stepsPerEpoch
        self.totalSteps = totalSteps
    }

    /// The event that opens the run.
    func started(parameterCount: Int, trainCount: Int, testCount: Int) -> TrainingEvent {
        .started(
            model: model, parameterCount: parameterCount, trainCount: trainCount, testCount: testCount,
            stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }

    /// Adds a finished step's figures to its epoch's and returns the step's progress.
    /// - Parameters:
    ///   - step: the 0-based global step, in the 0-based `epoch`.
    ///   - statistics: the step's loss sum, correct count and sample count.
    ///   - learningRate: the rate the optimizer used for it.
    ///   - epochSeconds: seconds of training so far in this epoch, this step included.
    mutating func record(
        step: Int, epoch: Int, statistics: BatchStatistics, learningRate: Double, epochSeconds: Double
    ) -> BatchProgress {
        epochStatistics.add(statistics)
        return BatchProgress(
            epoch: epoch + 1, epochs: epochs, step: step % stepsPerEpoch + 1, stepsPerEpoch: stepsPerEpoch,
            globalStep: step + 1, totalSteps: totalSteps, loss: statistics.meanLoss,
            accuracy: Self.accuracy(of: statistics), learningRate: learningRate,
            imagesPerSecond: Double(epochStatistics.count) / max(epochSeconds, 1e-9),
            trainingSeconds: trainingSeconds + epochSeconds)
    }

    /// Closes the 0-based `epoch`: adds its `seconds` of training to the run's, keeps and returns its
    /// summary, and starts the next epoch's statistics afresh.
    mutating func finishEpoch(_ epoch: Int, seconds: Double, testAccuracy: Double, evaluationSeconds: Double)
        -> EpochSummary
    {
        endTraining(ofEpoch: epoch, seconds: seconds)
        return finishEpoch(epoch, testAccuracy: testAccuracy, evaluationSeconds: evaluationSeconds)
    }

    /// Closes the training of the 0-based `epoch` (its last step is recorded), before its evaluation:
    /// the next epoch's steps may be recorded while the evaluation runs elsewhere.
    mutating func endTraining(ofEpoch epoch: Int, seconds: Double) {
        trainingSeconds += seconds
        trained[epoch] = (epochStatistics, seconds, trainingSeconds)
        epochStatistics = BatchStatistics()
    }

    /// The summary of the 0-based `epoch`, whose training was closed by `endTraining`, with its test
    /// figures; kept in `summaries`.
    mutating func finishEpoch(_ epoch: Int, testAccuracy: Double, evaluationSeconds: Double) -> EpochSummary {
        let (statistics, seconds, total) = trained.removeValue(forKey: epoch) ?? (BatchStatistics(), 0, trainingSeconds)
        let summary = EpochSummary(
            epoch: epoch + 1, epochs: epochs, loss: statistics.meanLoss,
            trainAccuracy: Self.accuracy(of: statistics), testAccuracy: testAccuracy, seconds: seconds,
            imagesPerSecond: Double(statistics.count) / max(seconds, 1e-9), trainingSeconds: total,
            evaluationSeconds: evaluationSeconds)
        summaries.append(summary)
        return summary
    }

    /// The fraction of samples classified correctly (0 when there are none).
    static func accuracy(of statistics: BatchStatistics) -> Double {
        Double(statistics.correct) / Double(max(1, statistics.count))
    }
}
