// `mnist bench`: throughput figures of the engine (a benchmark prints figures; it asserts nothing).
import ArgumentParser
import ConvNet
import Foundation
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference images/s of a network preset on random inputs.")

    @Option(help: ArgumentHelp("Network preset.", discussion: ModelPreset.all.map { "\($0.name): \($0.summary)" }.joined(separator: "\n")))
    var model = ModelPreset.classic.name

    @Option(help: "Training batch size.")
    var batchSize = 128

    @Option(help: "Threads (default: all cores).")
    var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Option(help: "Seconds to measure each figure.")
    var seconds = 3.0

    func validate() throws {
        guard ModelPreset.named(model) != nil else {
            throw ValidationError("--model: unknown preset '\(model)'; choose one of \(ModelPreset.all.map(\.name).joined(separator: ", "))")
        }
        guard (1...8192).contains(batchSize) else { throw ValidationError("--batch-size: must be 1...8192") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads: must be 1...256") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds: must be in (0, 600]") }
    }

    func run() throws {
        guard let preset = ModelPreset.named(model) else { return }
        let figures = try Benchmark.run(model: preset, threads: threads, trainingBatchSize: batchSize, seconds: seconds)
        print("model \(figures.model), \(figures.threads) threads")
        print(String(format: "training   %8.0f images/s  (batch %d, forward + backward + optimizer)", figures.trainingImagesPerSecond, figures.trainingBatchSize))
        print(String(format: "inference  %8.0f images/s  (best batch %d)", figures.inferenceImagesPerSecond, figures.inferenceBatchSize))
    }
}
