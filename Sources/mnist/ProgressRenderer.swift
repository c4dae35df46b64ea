// Shows a training run: a live progress bar on a terminal, one line per epoch elsewhere, or JSON lines.
// It only renders events; it never decides anything about training.
import Foundation
import Training

/// Turns training events into what the user sees.
final class ProgressRenderer {
    private let format: LogFormat
    private let terminal = Terminal.standardError
    private var lastDraw = Date.distantPast

    init(format: LogFormat) { self.format = format }

    func render(_ event: TrainingEvent) {
        switch event {
        case .started(let model, let parameterCount, let trainCount, let testCount, let stepsPerEpoch, let totalSteps):
            if format == .text {
                terminal.writeLine(
                    "training \(model) (\(parameterCount.formatted()) parameters) on \(trainCount.formatted()) images, "
                        + "testing on \(testCount.formatted()); \(stepsPerEpoch) steps per epoch, \(totalSteps) in all")
            }
        case .batchCompleted(let progress):
            guard format == .text, terminal.isInteractive else { return }
            let now = Date()
            guard now.timeIntervalSince(lastDraw) > 0.1 || progress.step == progress.stepsPerEpoch else { return }
            lastDraw = now
            terminal.status(Self.bar(progress))
        case .epochCompleted(let summary):
            switch format {
            case .text:
                terminal.writeLine(Self.line(summary))
            case .json:
                print(Self.json(summary))
                fflush(nil)  // All output streams: stdout is shared mutable state to Swift 6.
            }
        case .modelUpdated, .evaluated, .checkpointWritten:
            break  // For the dashboard; the log says nothing of them.
        }
    }

    static func bar(_ progress: BatchProgress) -> String {
        let width = 24
        let fraction = Double(progress.step) / Double(max(1, progress.stepsPerEpoch))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let remainingSteps = Double(progress.totalSteps - progress.globalStep)
        let secondsPerStep = progress.trainingSeconds / Double(max(1, progress.globalStep))
        return String(
            format: "epoch %d/%d [%@%@] %3.0f%%  %@ img/s  loss %.4f  ETA %@",
            progress.epoch, progress.epochs, String(repeating: "=", count: filled),
            String(repeating: " ", count: width - filled), fraction * 100,
            Int(progress.imagesPerSecond).formatted(), progress.loss, duration(remainingSteps * secondsPerStep))
    }

    static func line(_ summary: EpochSummary) -> String {
        String(
            format: "epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  %.1f s  %@ img/s",
            summary.epoch, summary.epochs, summary.loss, summary.trainAccuracy * 100, summary.testAccuracy * 100,
            summary.seconds, Int(summary.imagesPerSecond).formatted())
    }

    static func json(_ summary: EpochSummary) -> String {
        let object: [String: Any] = [
            "epoch": summary.epoch, "epochs": summary.epochs, "loss": summary.loss,
            "train_accuracy": summary.trainAccuracy, "test_accuracy": summary.testAccuracy,
            "seconds": summary.seconds, "images_per_second": summary.imagesPerSecond,
            "training_seconds": summary.trainingSeconds,
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return String(format: "%d:%02d", total / 60, total % 60)
    }
}
