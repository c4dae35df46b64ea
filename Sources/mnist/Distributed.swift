// Running a coordinator from the CLI: shared by `mnist coordinator` (workers started by someone else)
// and `mnist train --workers N` (workers started here, as child processes of this one).
import ArgumentParser
import ConvNet
import Foundation
import Host
import Logging
import MNIST
import Training

/// Options of a coordinator's network side.
struct ClusterOptions: ParsableArguments {
    @Option(help: "Seconds to wait for all workers to join before giving up (1-3600).")
    var joinTimeout = 120.0

    @Option(help: "Seconds of silence after which a worker is declared dead (1-600).")
    var liveness = 10.0

    @Option(
        help: ArgumentHelp(
            "Training goes on while at least this many workers are left (default 1).",
            discussion: "A lost worker's share of the data is spread over the others (or given to a spare)."))
    var minWorkers = 1

    @Option(
        help: ArgumentHelp(
            "Seconds a worker may take to answer a step before it is evicted and its work done elsewhere "
                + "(default: ten times the slowest answer so far, at least 10 s).", valueName: "seconds"))
    var stepTimeout: Double?

    @Option(
        help: ArgumentHelp(
            "Fraction of the workers' answers (0-1) computed a second time by another worker and compared bit "
                + "for bit; a worker whose answer differs from the coordinator's own computation is evicted.",
            discussion:
                "Each worker then also holds the blocks of the worker it audits. Workers must run the same build "
                + "on the same kind of CPU, or honest answers differ too.",
            valueName: "fraction"))
    var audit = 0.0

    func validate() throws {
        guard audit.isFinite, (0...1).contains(audit) else {
            throw ValidationError("--audit: must be a fraction in 0...1, got \(audit)")
        }
        guard (1...3600).contains(joinTimeout) else {
            throw ValidationError("--join-timeout: must be 1...3600 seconds")
        }
        guard (1...600).contains(liveness) else { throw ValidationError("--liveness: must be 1...600 seconds") }
        guard minWorkers >= 1 else { throw ValidationError("--min-workers: must be at least 1, got \(minWorkers)") }
        if let stepTimeout, !(1...86_400).contains(stepTimeout) {
            throw ValidationError("--step-timeout: must be 1...86400 seconds")
        }
    }

    func settings(workers: Int, security: CoordinatorSecurity?) -> ClusterSettings {
        var settings = ClusterSettings(workerCount: workers)
        settings.security = security
        settings.minimumWorkers = minWorkers
        settings.joinTimeoutSeconds = joinTimeout
        settings.livenessSeconds = liveness
        settings.stepTimeoutSeconds = stepTimeout
        settings.auditFraction = audit
        return settings
    }
}

/// Runs a coordinator to the end and writes the model. A run that cannot finish (signal, too few
/// workers) keeps its state in the checkpoint, never touches the model file, and exits non-zero
/// (130 for SIGINT, 143 for SIGTERM, else 1).
/// - Parameter onListening: called once the socket is bound, with the actual endpoint.
func runCoordinator(
    endpoint: String, workers: Int, data: MNISTData, configuration: TrainingConfiguration, cluster: ClusterOptions,
    security: CoordinatorSecurity?, checkpoints: CheckpointOptions, output: OutputOptions,
    dashboard: LiveDashboard? = nil, observing: DashboardOptions? = nil, logger: Logger,
    onListening: @escaping (String) throws -> Void = { _ in }
) throws {
    let trace = observing?.traceRecorder()
    defer { observing?.writeTrace(trace, logger: logger) }
    let renderer = ProgressRenderer(format: output.logFormat)
    let policy = try checkpoints.policy(
        output: output.outputURL, data: data, configuration: configuration, logger: logger)
    var listeningError: Error?
    var training: DistributedTraining?
    var blockCount = 1
    training = try DistributedTraining(
        configuration: configuration, data: data, endpoint: endpoint,
        cluster: cluster.settings(workers: workers, security: security),
        checkpoints: policy, trace: trace, logger: logger,
        onNodeEvent: { event in
            dashboard?.monitor.record(event, blockCount: blockCount)
            guard case .listening(let bound) = event else { return }
            let secured = security.map {
                " (CURVE: \($0.allowedWorkers.count) worker key\($0.allowedWorkers.count == 1 ? "" : "s") allowed)"
            }
            logger.info(
                "listening on \(bound)\(secured ?? ""); waiting for \(workers) worker\(workers == 1 ? "" : "s")")
            do {
                try onListening(bound)
            } catch {
                listeningError = error
                training?.requestStop(reason: "could not start the workers: \(error)")
            }
        })
    guard let training else { return }
    blockCount = training.blockCount
    let stopSignal = StopRequest()
    let watch = SignalWatch { signal in
        stopSignal.request("\(signal)")
        // SIGINT (a user) lets the workers go; SIGTERM (a preemption, a restart) leaves them waiting for
        // the coordinator that continues the run from its checkpoint.
        training.requestStop(
            reason: signal == SIGINT ? "interrupted (Ctrl-C)" : "terminated (signal \(signal))",
            releaseWorkers: signal == SIGINT)
    }
    defer { watch.cancel() }
    let result = training.run(onEvent: {
        renderer.render($0)
        dashboard?.monitor.record($0)
    })
    if let listeningError { throw listeningError }
    let accuracy = result.testEvaluation.accuracy
    guard result.outcome.isFinished else {
        let kept: String
        switch result.checkpoint {
        case .success(let url)?:
            kept = "the checkpoint \(url.path) holds step \(result.completedSteps): the same command continues the run"
        case .failure(let error)?:
            kept = "the checkpoint could not be written (\(error)); the last one written is kept"
        case nil:
            kept = "no checkpoint is kept"
        }
        logger.error("training stopped: \(result.outcome.reason); \(kept); \(output.output) was not touched")
        throw ExitCode(stopSignal.reason == "\(SIGINT)" ? 130 : stopSignal.reason == "\(SIGTERM)" ? 143 : 1)
    }
    try saveModel(
        result.network, to: output.outputURL, configuration: configuration, testAccuracy: accuracy,
        finalState: { training.state() }, checkpoint: policy.url)
    try? FileManager.default.removeItem(at: policy.url)  // The run is finished; its model is written.
    logger.info(
        "per step: \(String(format: "%.1f", result.meanGatherSeconds * 1000)) ms from sending the weights to the last gradient, \(String(format: "%.1f", result.meanApplySeconds * 1000)) ms applying; \(String(format: "%.1f", Double(result.bytesPerStep) / 1000)) kB on the wire"
    )
    logger.info(
        "test accuracy \(String(format: "%.2f", accuracy * 100))% after \(result.completedSteps) steps; model written to \(output.output)"
    )
}

/// Checks a ZeroMQ endpoint's form, naming the flag: a known transport, and for tcp a host (or `*`)
/// and a port in 1...65535 (or `*` for any free one).
func validateEndpoint(_ endpoint: String, flag: String) throws {
    let transports = ["tcp://", "ipc://", "inproc://"]
    guard transports.contains(where: endpoint.hasPrefix), endpoint.count > 8 else {
        throw ValidationError("\(flag): '\(endpoint)' is not a ZeroMQ endpoint such as tcp://host:5555")
    }
    guard endpoint.hasPrefix("tcp://") else { return }
    let address = endpoint.dropFirst("tcp://".count)
    guard let colon = address.lastIndex(of: ":"), colon != address.startIndex else {
        throw ValidationError("\(flag): '\(endpoint)' has no host and port; write tcp://host:5555")
    }
    let port = address[address.index(after: colon)...]
    guard port == "*" || (Int(port).map { (1...65535).contains($0) } ?? false) else {
        throw ValidationError(
            "\(flag): '\(endpoint)': the port must be 1...65535 (or * for any free port), got '\(port)'")
    }
}
