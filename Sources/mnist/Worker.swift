// `mnist worker`: join a coordinator, receive a shard over ZeroMQ, compute gradients until told to stop.
import ArgumentParser
import DataParallel
import ConvNet
import Foundation
import Host
import Training

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute gradients for a coordinator; needs no data files.",
        discussion: """
            Retries with backoff until the coordinator is there, receives its shard of the training images and \
            the training settings over ZeroMQ, and exits 0 when the coordinator says training is over. Exits 1 \
            if the coordinator refuses it, cannot be reached, or goes silent.
            """)

    @Option(help: ArgumentHelp("The coordinator's ZeroMQ endpoint.", valueName: "endpoint"))
    var connect: String

    @Option(
        help: """
            Threads for OpenBLAS and the kernels (1-256; default: the CPUs this process may use, container \
            limits included).
            """)
    var threads = AvailableCPUs.count

    @Option(help: "A name for this worker in the coordinator's logs (default: host-pid).")
    var name = "\(ProcessInfo.processInfo.hostName)-\(getpid())"

    @Option(
        help: ArgumentHelp(
            "Seconds to keep reconnecting, with backoff, while no coordinator answers (1-86400).",
            discussion: "Long enough by default for a coordinator to be restarted, or scheduled later.",
            valueName: "seconds"))
    var reconnectTimeout = 600.0

    @Option(
        help: ArgumentHelp(
            "Folder with coordinator.public and this worker's secret key (from `mnist keygen`), for a coordinator "
                + "started with --keys.", valueName: "dir"))
    var keys: String?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try validateEndpoint(connect, flag: "--connect")
        guard reconnectTimeout.isFinite, (1...86400).contains(reconnectTimeout) else {
            throw ValidationError("--reconnect-timeout: must be 1...86400 seconds, got \(reconnectTimeout)")
        }
        guard (1...256).contains(threads) else { throw ValidationError("--threads: must be 1...256, got \(threads)") }
        guard !name.isEmpty, name.count <= ProtocolInfo.maximumNameLength, printableName(name) == name else {
            throw ValidationError(
                "--name: 1...\(ProtocolInfo.maximumNameLength) characters without control characters, got \(printableName(name))"
            )
        }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.worker")
        let threads = self.threads
        var times = WorkerStepTimes()
        var configuration = WorkerNodeConfiguration(endpoint: connect, name: name, threads: threads)
        if let keys {
            configuration.security = try KeyFolder(url: URL(fileURLWithPath: keys, isDirectory: true))
                .workerSecurity(name: name)
        } else if !isLocalEndpoint(connect) {
            logger.warning("talking to \(connect) unencrypted: a coordinator on another machine should use --keys")
        }
        configuration.stateMachine.maximumReconnectAttempts = .max  // The time budget decides.
        configuration.stateMachine.reconnectTimeoutTicks = Int(
            (reconnectTimeout * 1000 / Double(configuration.tickMilliseconds)).rounded(.up))
        let node = WorkerNode(
            configuration: configuration,
            makeGradientComputer: { settings, shard in
                try NetworkGradientComputer(settings: settings, shard: shard)
            },
            logger: logger,
            onEvent: { event in
                if case .stepComputed(_, _, let seconds) = event {
                    times.add(seconds: seconds, reportedAt: Double(DispatchTime.now().uptimeNanoseconds) / 1e9)
                }
            })
        let watch = SignalWatch { signal in
            node.requestStop(reason: signal == SIGINT ? "interrupted (Ctrl-C)" : "terminated (signal \(signal))")
        }
        defer { watch.cancel() }
        // The worker's own cores decide its thread count, not the coordinator's settings.
        ComputeThreads.configure(threads: threads)
        let outcome = node.run()
        if times.steps > 0 { logger.info("\(times.summary)") }
        if !outcome.isFinished { throw ExitCode(1) }
    }
}
