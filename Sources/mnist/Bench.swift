// `mnist bench`: throughput figures of the engine, and optionally the seconds of training the default
// configuration needs to reach a test accuracy on the real data. A benchmark prints figures; it asserts
// nothing and has no time limits.
import ArgumentParser
import ConvNet
import Foundation
import Host
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference images/s of a network preset, and the time to an accuracy.",
        discussion: """
            Throughput uses random inputs and needs no data. --to-accuracy trains the default configuration \
            on the real MNIST (see --data) and reports the seconds of training (test evaluations excluded) \
            until the test accuracy after an epoch first reaches the target. Cluster/benchmark.sh adds the \
            distributed figures.
            """)

    @Option(
        help: ArgumentHelp(
            "Network preset for the throughput figures.",
            discussion: ModelPreset.all.map { "\($0.name): \($0.summary)" }.joined(separator: "\n")))
    var model = ModelPreset.classic.name

    @Option(help: "Training batch size for the throughput figure.")
    var batchSize = 128

    @Option(help: "Threads (default: the CPUs this process may use).")
    var threads = AvailableCPUs.count

    @Option(help: "Seconds to measure each throughput figure.")
    var seconds = 3.0

    @Option(help: "Also train the default configuration until this test accuracy (e.g. 0.99) and report the time.")
    var toAccuracy: Double?

    @OptionGroup var data: DataOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard ModelPreset.named(model) != nil else {
            throw ValidationError(
                "--model: unknown preset '\(model)'; choose one of \(ModelPreset.all.map(\.name).joined(separator: ", "))"
            )
        }
        guard (1...8192).contains(batchSize) else { throw ValidationError("--batch-size: must be 1...8192") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads: must be 1...256") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds: must be in (0, 600]") }
        if let toAccuracy, !(0.1...1).contains(toAccuracy) {
            throw ValidationError("--to-accuracy: must be in [0.1, 1]")
        }
    }

    func run() throws {
        guard let preset = ModelPreset.named(model) else { return }
        let figures = try Benchmark.run(model: preset, threads: threads, trainingBatchSize: batchSize, seconds: seconds)
        print("model \(figures.model), \(figures.threads) threads")
        print(
            String(
                format: "training   %8.0f images/s  (batch %d, forward + backward + optimizer; %.0f per CPU-second)",
                figures.trainingImagesPerSecond, figures.trainingBatchSize, figures.trainingImagesPerCPUSecond))
        print(
            String(
                format: "inference  %8.0f images/s  (best batch %d; %.0f per CPU-second)",
                figures.inferenceImagesPerSecond, figures.inferenceBatchSize, figures.inferenceImagesPerCPUSecond))
        let inputs = figures.inputMicroseconds
        print(
            String(
                format:
                    "inputs     %8.2f µs per image normalised, %.2f shifted by whole pixels, %.2f affine, %.2f affine and elastic (one thread)",
                inputs.plain, inputs.wholePixelShift, inputs.affine, inputs.elastic))
        if let target = toAccuracy {
            try timeToAccuracy(target)
        }
        print(String(format: "peak resident memory %.0f MB", peakResidentMegabytes()))
    }

    private func timeToAccuracy(_ target: Double) throws {
        let logger = logging.makeLogger(label: "mnist.bench")
        let dataset = try data.load(logger: logger)
        var configuration = TrainingConfiguration()
        configuration.threads = threads
        var reached: EpochSummary?
        var last: EpochSummary?
        _ = try SingleProcessTrainer(configuration: configuration).train(data: dataset) { event in
            guard case .epochCompleted(let summary) = event else { return }
            last = summary
            if reached == nil, summary.testAccuracy >= target { reached = summary }
        }
        if let reached {
            print(
                String(
                    format:
                        "default configuration (%@): %.2f%% test accuracy after %.1f s of training (epoch %d of %d)",
                    configuration.model, reached.testAccuracy * 100, reached.trainingSeconds, reached.epoch,
                    reached.epochs))
        } else if let last {
            print(
                String(
                    format: "default configuration (%@): never reached %.2f%%; %.2f%% after %.1f s of training",
                    configuration.model, target * 100, last.testAccuracy * 100, last.trainingSeconds))
        }
        if let last {
            print(
                String(
                    format: "default configuration: final test accuracy %.2f%%, %.0f images/s", last.testAccuracy * 100,
                    last.imagesPerSecond))
        }
    }
}

/// The process's peak resident set size, in megabytes (getrusage's ru_maxrss is in kilobytes on Linux).
func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}
