// `mnist train`: train on one node, in this process (no sockets).
import ArgumentParser
import ConvNet
import Foundation
import Host
import Logging
import MNIST
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the network on MNIST in this process and write the model.",
        discussion: "With no options this trains the default preset to about 99.2% test accuracy.")

    @OptionGroup var data: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var logging: LoggingOptions

    @Option(
        help: """
            Train with a coordinator in this process and N worker processes on this machine, over ZeroMQ \
            (0: no sockets, all in this process; 0-64).
            """)
    var workers = 0

    @OptionGroup var cluster: ClusterOptions

    @Option(
        help: ArgumentHelp(
            "Where the run keeps its checkpoint (single process). Default: beside --output, as NAME.checkpoint.safetensors.",
            discussion: """
                Written once per epoch (see --checkpoint-every) and when the run is stopped by SIGINT or SIGTERM. \
                The same command continues from it, to the same model file as an uninterrupted run; it is \
                removed when the run finishes. `evaluate` and `predict` read it as a model.
                """,
            valueName: "path"))
    var checkpoint: String?

    @Option(help: ArgumentHelp("Steps between checkpoints (default: once per epoch).", valueName: "steps"))
    var checkpointEvery: Int?

    @Flag(help: "Start over even if a checkpoint of this run exists (it is replaced).")
    var fresh = false

    func validate() throws {
        guard (0...64).contains(workers) else { throw ValidationError("--workers: must be 0...64, got \(workers)") }
        if let checkpointEvery, checkpointEvery < 1 {
            throw ValidationError("--checkpoint-every: must be at least 1, got \(checkpointEvery)")
        }
        if workers > 0, checkpoint != nil || checkpointEvery != nil || fresh {
            throw ValidationError(
                "--checkpoint, --checkpoint-every and --fresh apply to training in one process; "
                    + "with --workers the run keeps no checkpoint yet")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: checkpointURL.path, isDirectory: &isDirectory), isDirectory.boolValue
        {
            throw ValidationError("--checkpoint: \(checkpointURL.path) is a folder; name a file")
        }
    }

    /// The checkpoint file of this run.
    var checkpointURL: URL {
        checkpoint.map { URL(fileURLWithPath: $0) } ?? Checkpoint.defaultURL(forOutput: output.outputURL)
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.train")
        let dataset = try data.load(logger: logger)
        let configuration = training.configuration
        if workers > 0 {
            try trainWithLocalWorkers(data: dataset, configuration: configuration, logger: logger)
            return
        }
        let renderer = ProgressRenderer(format: output.logFormat)
        let policy = try checkpointPolicy(data: dataset, configuration: configuration, logger: logger)
        let stop = StopRequest()
        let watch = SignalWatch { signal in
            stop.request(signal == SIGINT ? "interrupted (Ctrl-C)" : "terminated (signal \(signal))")
        }
        let result: TrainingResult
        do {
            result = try SingleProcessTrainer(configuration: configuration).train(
                data: dataset, checkpoints: policy, onEvent: renderer.render, stopReason: { stop.reason })
        } catch let interrupted as TrainingInterrupted {
            watch.cancel()
            logger.error("\(interrupted)")
            throw ExitCode(interrupted.reason.hasPrefix("interrupted") ? 130 : 143)
        }
        watch.cancel()
        try result.network.save(to: output.outputURL, configuration: configuration, testAccuracy: result.testAccuracy)
        try? FileManager.default.removeItem(at: policy.url)  // The run is finished; its model is written.
        logger.debug("peak resident memory \(Int(peakResidentMegabytes())) MB")
        logger.info(
            "test accuracy \(String(format: "%.2f", result.testAccuracy * 100))% after \(String(format: "%.1f", result.trainingSeconds)) s of training; model written to \(output.output)"
        )
    }
}

extension Train {
    /// Where checkpoints go and, unless `--fresh`, the checkpoint of this run to continue from; a
    /// checkpoint of another configuration or data set is refused, naming what differs.
    func checkpointPolicy(data: MNISTData, configuration: TrainingConfiguration, logger: Logger) throws
        -> CheckpointPolicy
    {
        let url = checkpointURL
        let fingerprint = Checkpoint.fingerprint(of: data.train)
        var policy = CheckpointPolicy(url: url, everySteps: checkpointEvery, dataFingerprint: fingerprint)
        guard !fresh, FileManager.default.fileExists(atPath: url.path) else { return policy }
        let parameters = try Network(architecture: configuration.preset.architecture, seed: 0).parameterCount
        let found = try Checkpoint.read(from: url, parameterCount: parameters)
        if let mismatch = found.mismatch(configuration: configuration, dataFingerprint: fingerprint) {
            throw TrainingConfiguration.ValidationError(
                flag: "--checkpoint",
                message: "\(url.path) is the checkpoint of another run (\(mismatch)). Give the same options to "
                    + "continue it, --fresh to start over, or another --checkpoint.")
        }
        logger.notice("continuing from the checkpoint \(url.path) after step \(found.step) (--fresh starts over)")
        policy.resume = found
        return policy
    }

    /// The coordinator here, `workers` child processes of this executable as workers, all stopped on exit.
    func trainWithLocalWorkers(data: MNISTData, configuration: TrainingConfiguration, logger: Logger) throws {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let threadsPerWorker = max(1, configuration.threads / workers)
        let verbosity = logging.verbose ? ["--verbose"] : logging.quiet ? ["--quiet"] : []
        var cluster: LocalCluster?
        defer { cluster?.terminate(gracePeriod: 3) }
        // A Unix-domain socket: the same ZeroMQ protocol as tcp://, with less kernel work per step.
        let socketPath = FileManager.default.temporaryDirectory.appendingPathComponent("mnist-\(getpid()).ipc").path
        defer { unlink(socketPath) }
        try runCoordinator(
            endpoint: "ipc://\(socketPath)", workers: workers, data: data, configuration: configuration,
            cluster: self.cluster, output: output, logger: logger,
            onListening: { endpoint in
                let started = LocalCluster(
                    executable: executable, workerCount: workers,
                    arguments: { index in
                        [
                            "worker", "--connect", endpoint, "--threads", "\(threadsPerWorker)", "--name",
                            "local-\(index)",
                        ]
                            + verbosity
                    })
                try started.start()
                cluster = started
            })
    }
}
