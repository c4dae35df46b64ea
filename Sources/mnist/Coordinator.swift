// `mnist coordinator`: hold the data, shard it to workers over ZeroMQ, run synchronous steps.
import ArgumentParser
import Foundation
import Training

struct Coordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Coordinate distributed training: shard MNIST to N workers over ZeroMQ and average their gradients.",
        discussion: """
            Start workers anywhere with `mnist worker --connect tcp://THIS_HOST:5555`; they need no data files. \
            Each step, every worker computes the summed gradient of its part of the global batch at the same \
            weights; the coordinator applies their sample-weighted mean. A lost worker's share moves to the \
            others (or to a spare that joined beyond --workers); a worker may join at any time. The model is \
            written at the end; a run that stops keeps a checkpoint, and the same command continues it to the \
            same model file.
            """)

    @Option(help: ArgumentHelp("ZeroMQ endpoint to bind (a ROUTER socket).", valueName: "endpoint"))
    var bind = "tcp://*:5555"

    @Option(help: "Number of workers to wait for (1-1024).")
    var workers: Int

    @OptionGroup var security: CoordinatorSecurityOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var checkpoints: CheckpointOptions
    @OptionGroup var data: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var dashboard: DashboardOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try validateEndpoint(bind, flag: "--bind")
        try security.validate(bind: bind)
        guard (1...1024).contains(workers) else { throw ValidationError("--workers: must be 1...1024, got \(workers)") }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.coordinator")
        let keys = try security.security()
        let dataset = try data.load(logger: logger)
        let live = try dashboard.start(
            mode: "coordinator", configuration: training.configuration, data: dataset, logger: logger)
        var ending = ("stopped", "training stopped")
        defer { live?.stop(status: ending.0, ending.1) }
        try runCoordinator(
            endpoint: bind, workers: workers, data: dataset, configuration: training.configuration, cluster: cluster,
            security: keys, checkpoints: checkpoints, output: output, dashboard: live, observing: dashboard,
            logger: logger)
        ending = ("finished", "model written to \(output.output)")
    }
}
