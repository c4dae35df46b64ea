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

    func validate() throws {
        guard (1...3600).contains(joinTimeout) else {
            throw ValidationError("--join-timeout: must be 1...3600 seconds")
        }
        guard (1...600).contains(liveness) else { throw ValidationError("--liveness: must be 1...600 seconds") }
    }
}

/// Runs a coordinator to the end, saves the model (also after a failure: the steps done so far), and
/// throws `ExitCode(1)` when the run failed.
/// - Parameter onListening: called once the socket is bound, with the actual endpoint.
func runCoordinator(
    endpoint: String, workers: Int, data: MNISTData, configuration: TrainingConfiguration, cluster: ClusterOptions,
    output: OutputOptions, logger: Logger, onListening: @escaping (String) throws -> Void = { _ in }
) throws {
    let renderer = ProgressRenderer(format: output.logFormat)
    var listeningError: Error?
    var training: DistributedTraining?
    training = try DistributedTraining(
        configuration: configuration, data: data, endpoint: endpoint, workerCount: workers,
        joinTimeoutSeconds: cluster.joinTimeout, livenessSeconds: cluster.liveness, logger: logger,
        onNodeEvent: { event in
            guard case .listening(let bound) = event else { return }
            logger.info("listening on \(bound); waiting for \(workers) worker\(workers == 1 ? "" : "s")")
            do {
                try onListening(bound)
            } catch {
                listeningError = error
                training?.requestStop(reason: "could not start the workers: \(error)")
            }
        })
    guard let training else { return }
    let watch = SignalWatch { signal in
        // The coordinator tells the workers to stop, then `run` returns and the model is saved.
        training.requestStop(reason: signal == SIGINT ? "interrupted (Ctrl-C)" : "terminated (signal \(signal))")
    }
    defer { watch.cancel() }
    let result = training.run(onEvent: renderer.render)
    if let listeningError { throw listeningError }
    let accuracy = result.testEvaluation.accuracy
    if result.completedSteps > 0 {
        try result.network.save(to: output.outputURL, configuration: configuration, testAccuracy: accuracy)
    }
    guard result.outcome.isFinished else {
        let saved =
            result.completedSteps > 0
            ? "the model after \(result.completedSteps) steps (test accuracy \(String(format: "%.2f", accuracy * 100))%) is saved to \(output.output)"
            : "no step was completed, so no model was written"
        logger.error("training stopped: \(result.outcome.reason); \(saved)")
        throw ExitCode(1)
    }
    logger.info(
        "per step: \(String(format: "%.1f", result.meanGatherSeconds * 1000)) ms from sending the weights to the last gradient, \(String(format: "%.1f", result.meanApplySeconds * 1000)) ms applying; \(String(format: "%.1f", Double(result.bytesPerStep) / 1000)) kB on the wire"
    )
    logger.info(
        "test accuracy \(String(format: "%.2f", accuracy * 100))% after \(result.completedSteps) steps; model written to \(output.output)"
    )
}

/// Checks a ZeroMQ endpoint's form, naming the flag.
func validateEndpoint(_ endpoint: String, flag: String) throws {
    let transports = ["tcp://", "ipc://", "inproc://"]
    guard transports.contains(where: endpoint.hasPrefix), endpoint.count > 8 else {
        throw ValidationError("\(flag): '\(endpoint)' is not a ZeroMQ endpoint such as tcp://host:5555")
    }
}
