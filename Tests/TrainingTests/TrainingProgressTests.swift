// The figures both trainers report, from given statistics and seconds: step numbering across epochs,
// images per second, training time that leaves the evaluations out, and epoch summaries; and the
// distributed run's translation of coordinator-node events into them (timings aside).
import ConvNet
import XCTest

@testable import Training

final class TrainingProgressTests: XCTestCase {
    func testStepsAndEpochsAreNumberedFromOneAndTimesAccumulateOverTraining() {
        var configuration = TrainingConfiguration()
        configuration.epochs = 2
        var progress = TrainingProgress(configuration: configuration, stepsPerEpoch: 2, totalSteps: 4)
        XCTAssertEqual(
            progress.started(parameterCount: 9, trainCount: 30, testCount: 5),
            .started(
                model: configuration.model, parameterCount: 9, trainCount: 30, testCount: 5, stepsPerEpoch: 2,
                totalSteps: 4))

        let first = progress.record(
            step: 0, epoch: 0, statistics: BatchStatistics(lossSum: 8, correct: 12, count: 16), learningRate: 0.1,
            epochSeconds: 2)
        XCTAssertEqual(
            first,
            BatchProgress(
                epoch: 1, epochs: 2, step: 1, stepsPerEpoch: 2, globalStep: 1, totalSteps: 4, loss: 0.5,
                accuracy: 0.75, learningRate: 0.1, imagesPerSecond: 8, trainingSeconds: 2))
        let second = progress.record(
            step: 1, epoch: 0, statistics: BatchStatistics(lossSum: 6, correct: 8, count: 14), learningRate: 0.1,
            epochSeconds: 3)
        XCTAssertEqual(second.step, 2)
        XCTAssertEqual(second.loss, 6.0 / 14)
        XCTAssertEqual(second.accuracy, 8.0 / 14)
        XCTAssertEqual(second.imagesPerSecond, 10, "30 images in 3 s of the epoch")
        let summary = progress.finishEpoch(0, seconds: 3, testAccuracy: 0.9, evaluationSeconds: 7)
        XCTAssertEqual(
            summary,
            EpochSummary(
                epoch: 1, epochs: 2, loss: 14.0 / 30, trainAccuracy: 20.0 / 30, testAccuracy: 0.9, seconds: 3,
                imagesPerSecond: 10, trainingSeconds: 3, evaluationSeconds: 7))

        // The second epoch starts its statistics afresh; its training time adds to the first's only.
        let third = progress.record(
            step: 2, epoch: 1, statistics: BatchStatistics(lossSum: 1, correct: 4, count: 4), learningRate: 0.05,
            epochSeconds: 1)
        XCTAssertEqual(third.epoch, 2)
        XCTAssertEqual(third.step, 1)
        XCTAssertEqual(third.globalStep, 3)
        XCTAssertEqual(third.imagesPerSecond, 4)
        XCTAssertEqual(third.trainingSeconds, 4)
        let last = progress.finishEpoch(1, seconds: 2, testAccuracy: 0.95, evaluationSeconds: 7)
        XCTAssertEqual(last.loss, 0.25)
        XCTAssertEqual(last.trainAccuracy, 1)
        XCTAssertEqual(last.trainingSeconds, 5)
        XCTAssertEqual(progress.summaries, [summary, last])
    }

    func testAccuracyOfNoSamplesIsZero() {
        XCTAssertEqual(TrainingProgress.accuracy(of: BatchStatistics()), 0)
        XCTAssertEqual(TrainingProgress.accuracy(of: BatchStatistics(lossSum: 1, correct: 3, count: 4)), 0.75)
    }

    func testCoordinatorNodeEventsBecomeTheSameKindOfProgress() throws {
        var configuration = TrainingConfiguration()
        configuration.epochs = 2
        var tracker = ProgressTracker(
            configuration: configuration, trainCount: 30, testCount: 5, parameterCount: 9, stepsPerEpoch: 2,
            totalSteps: 4)
        func metrics(step: Int, count: Int, loss: Double, accuracy: Double) -> StepMetrics {
            StepMetrics(
                step: step, epoch: step / 2, sampleCount: count, lossSum: loss * Double(count),
                correctCount: Int(accuracy * Double(count)), learningRate: 0.001 * Double(step + 1),
                gatherSeconds: 0.5, applySeconds: 0.25)
        }
        XCTAssertEqual(
            tracker.translate(.trainingStarted(workers: [])),
            [
                .started(
                    model: configuration.model, parameterCount: 9, trainCount: 30, testCount: 5, stepsPerEpoch: 2,
                    totalSteps: 4)
            ])
        XCTAssertEqual(tracker.translate(.listening(endpoint: "tcp://127.0.0.1:1")), [])
        var batches: [BatchProgress] = []
        for (step, count, loss, accuracy) in [(0, 16, 0.5, 0.75), (1, 14, 0.25, 0.5), (2, 16, 0.125, 1.0)] {
            let events = tracker.translate(
                .stepCompleted(metrics(step: step, count: count, loss: loss, accuracy: accuracy)))
            guard case .batchCompleted(let batch) = try XCTUnwrap(events.first), events.count == 1 else {
                return XCTFail("step \(step): \(events)")
            }
            batches.append(batch)
            if step == 1 {
                let events = tracker.translate(
                    .epochCompleted(epoch: 0, evaluation: EpochEvaluation(accuracy: 0.9, meanLoss: 0.3)))
                guard case .epochCompleted(let summary) = try XCTUnwrap(events.first) else {
                    return XCTFail("\(events)")
                }
                XCTAssertEqual(summary.epoch, 1)
                XCTAssertEqual(summary.epochs, 2)
                XCTAssertEqual(summary.loss, (16 * 0.5 + 14 * 0.25) / 30, accuracy: 1e-12)
                XCTAssertEqual(summary.trainAccuracy, 19.0 / 30, "12 + 7 of 30 correct")
                XCTAssertEqual(summary.testAccuracy, 0.9)
            }
        }
        XCTAssertEqual(batches.map(\.epoch), [1, 1, 2])
        XCTAssertEqual(batches.map(\.step), [1, 2, 1])
        XCTAssertEqual(batches.map(\.globalStep), [1, 2, 3])
        XCTAssertEqual(batches.map(\.loss), [0.5, 0.25, 0.125])
        XCTAssertEqual(batches.map(\.accuracy), [0.75, 0.5, 1])
        XCTAssertEqual(batches.map(\.learningRate), [0.001, 0.002, 0.003], "the rate the optimizer used")
        XCTAssertEqual(tracker.summaries.count, 1)
        XCTAssertEqual(tracker.stepCount, 3)
        XCTAssertEqual(tracker.gatherSeconds, 1.5)
        XCTAssertEqual(tracker.applySeconds, 0.75)
    }

    /// Three steps computed in 0.5, 0.6 and 0.5 s, reported at 1.0, 2.0 and 3.5 s: between them lie
    /// (2.0 - 1.0 - 0.6) + (3.5 - 2.0 - 0.5) = 1.4 s over two gaps.
    func testWorkerStepTimesSplitComputingFromWhatLiesBetweenSteps() {
        var times = WorkerStepTimes()
        XCTAssertEqual(times.meanComputeSeconds, 0)
        XCTAssertEqual(times.meanBetweenSeconds, 0)
        times.add(seconds: 0.5, reportedAt: 1.0)
        XCTAssertEqual(times.meanBetweenSeconds, 0, "one step has nothing between")
        times.add(seconds: 0.6, reportedAt: 2.0)
        times.add(seconds: 0.5, reportedAt: 3.5)
        XCTAssertEqual(times.steps, 3)
        XCTAssertEqual(times.meanComputeSeconds, 1.6 / 3, accuracy: 1e-12)
        XCTAssertEqual(times.meanBetweenSeconds, 0.7, accuracy: 1e-12)
        XCTAssertEqual(
            times.summary,
            "computed 3 steps, 533.3 ms each on average; 700.0 ms between steps (sending, waiting, receiving)")
    }
}
