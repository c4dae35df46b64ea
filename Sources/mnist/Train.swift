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
        discussion: "With no options this trains the default preset (fast, 6 epochs) to about 99.4% test accuracy.")

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
    @OptionGroup var checkpoints: CheckpointOptions
    @OptionGroup var dashboard: DashboardOptions

    @Option(
        help: ArgumentHelp(
            "With --workers: encrypt the local traffic with the CURVE keys in this folder (from `mnist keygen`).",
            valueName: "dir"))
    var keys: String?

    func validate() throws {
        guard (0...64).contains(workers) else { throw ValidationError("--workers: must be 0...64, got \(workers)") }
        if keys != nil && workers == 0 { throw ValidationError("--keys: needs --workers (no sockets without)") }
        if dashboard.trace != nil && workers == 0 {
            throw ValidationError("--trace: needs --workers (the timeline is of a coordinator and its workers)")
        }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.train")
        let dataset = try data.load(logger: logger)
        let configuration = training.configuration
        let live = try dashboard.start(
            mode: workers > 0 ? "coordinator" : "single", configuration: configuration, data: dataset, logger: logger)
        var ending = ("stopped", "training stopped")
        defer { live?.stop(status: ending.0, ending.1) }
        if workers > 0 {
            try trainWithLocalWorkers(data: dataset, configuration: configuration, dashboard: live, logger: logger)
            ending = ("finished", "model written to \(output.output)")
            return
        }
        let renderer = ProgressRenderer(format: output.logFormat)
        let policy = try checkpoints.policy(
            output: output.outputURL, data: dataset, configuration: configuration, logger: logger)
        let stop = StopRequest()
        let watch = SignalWatch { signal in
            stop.request(signal == SIGINT ? "interrupted (Ctrl-C)" : "terminated (signal \(signal))")
        }
        let result: TrainingResult
        do {
            result = try SingleProcessTrainer(configuration: configuration).train(
                data: dataset, checkpoints: policy,
                onEvent: {
                    renderer.render($0)
                    live?.monitor.record($0)
                }, stopReason: { stop.reason })
        } catch let interrupted as TrainingInterrupted {
            watch.cancel()
            logger.error("\(interrupted)")
            throw ExitCode(interrupted.reason.hasPrefix("interrupted") ? 130 : 143)
        }
        watch.cancel()
        try saveModel(
            result.network, to: output.outputURL, configuration: configuration, testAccuracy: result.testAccuracy,
            finalState: { result.finalState }, checkpoint: policy.url)
        try? FileManager.default.removeItem(at: policy.url)  // The run is finished; its model is written.
        ending = ("finished", "model written to \(output.output)")
        logger.debug("peak resident memory \(Int(peakResidentMegabytes())) MB")
        logger.info(
            "test accuracy \(String(format: "%.2f", result.testAccuracy * 100))% after \(String(format: "%.1f", result.trainingSeconds)) s of training; model written to \(output.output)"
        )
    }
}

extension Train {
    /// The coordinator here, `workers` child processes of this executable as workers, all stopped on exit.
    func trainWithLocalWorkers(
        data: MNISTData, configuration: TrainingConfiguration, dashboard: LiveDashboard?, logger: Logger
    ) throws {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let threadsPerWorker = max(1, configuration.threads / workers)
        let verbosity = logging.verbose ? ["--verbose"] : logging.quiet ? ["--quiet"] : []
        var cluster: LocalCluster?
        defer { cluster?.terminate(gracePeriod: 3) }
        let security = try keys.map {
            try KeyFolder(url: URL(fileURLWithPath: $0, isDirectory: true)).coordinatorSecurity()
        }
        // A Unix-domain socket: the same ZeroMQ protocol as tcp://, with less kernel work per step. It
        // lives in a folder of this user's only (mode 0700), so no other user can connect to it.
        let folder = try PrivateFolder(prefix: "mnist-train")
        defer { folder.remove() }
        let socketPath = folder.url.appendingPathComponent("coordinator.ipc").path
        try runCoordinator(
            endpoint: "ipc://\(socketPath)", workers: workers, data: data, configuration: configuration,
            cluster: self.cluster, security: security, checkpoints: checkpoints, output: output,
            dashboard: dashboard, observing: self.dashboard, logger: logger,
            onListening: { endpoint in
                chmod(socketPath, 0o600)  // Inside a folder of its own, and this user's only as well.
                let started = LocalCluster(
                    executable: executable, workerCount: workers,
                    arguments: { index in
                        [
                            "worker", "--connect", endpoint, "--threads", "\(threadsPerWorker)", "--name",
                            "local-\(index)",
                        ]
                            + verbosity + (keys.map { ["--keys", $0] } ?? [])
                    })
                try started.start()
                cluster = started
            })
    }
}
