// The checkpoint flags of `mnist train` and `mnist coordinator`, and what both do with a run's
// checkpoint: continue from it, refuse one of another run, and keep the state of a run that could not
// finish (or whose model could not be written) somewhere it can be continued or exported from.
import ArgumentParser
import ConvNet
import Foundation
import Logging
import MNIST
import Training

struct CheckpointOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Where the run keeps its checkpoint. Default: beside --output, as NAME.checkpoint.safetensors.",
            discussion: """
                Written once per epoch (see --checkpoint-every), when the run is stopped by SIGINT or SIGTERM \
                and when it fails. The same command continues from it, to the same model file as an \
                uninterrupted run; it is removed when the run finishes. `evaluate` and `predict` read it as a \
                model; `mnist export` turns it into one.
                """,
            valueName: "path"))
    var checkpoint: String?

    @Option(help: ArgumentHelp("Steps between checkpoints (default: once per epoch).", valueName: "steps"))
    var checkpointEvery: Int?

    @Flag(help: "Start over even if a checkpoint of this run exists (it is replaced).")
    var fresh = false

    func validate() throws {
        if let checkpointEvery, checkpointEvery < 1 {
            throw ValidationError("--checkpoint-every: must be at least 1, got \(checkpointEvery)")
        }
        if let checkpoint { try refuseNonRegularFile(checkpoint, flag: "--checkpoint") }
    }

    /// The checkpoint file of a run writing its model to `output`.
    func url(forOutput output: URL) -> URL {
        checkpoint.map { URL(fileURLWithPath: $0) } ?? Checkpoint.defaultURL(forOutput: output)
    }

    /// Where checkpoints go and, unless `--fresh`, the checkpoint of this run to continue from; a
    /// checkpoint of another configuration or data set is refused, naming what differs.
    func policy(output: URL, data: MNISTData, configuration: TrainingConfiguration, logger: Logger) throws
        -> CheckpointPolicy
    {
        let url = url(forOutput: output)
        try refuseNonRegularFile(url.path, flag: "--checkpoint")
        let fingerprint = Checkpoint.fingerprint(of: data.train)
        var policy = CheckpointPolicy(url: url, everySteps: checkpointEvery, dataFingerprint: fingerprint)
        policy.onWriteFailure = { step, error in
            logger.warning("could not write the checkpoint after step \(step): \(error); the previous one is kept")
        }
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
}

/// Writes the finished model to `output`; if that fails (disk full, folder gone), keeps the run's
/// final state as a checkpoint (at `checkpoint`, else in the temporary folder) and throws an error that
/// names it and the command that turns it into the model.
func saveModel(
    _ network: Network, to output: URL, configuration: TrainingConfiguration, testAccuracy: Double,
    finalState: () -> Checkpoint?, checkpoint: URL?
) throws {
    do {
        try network.save(to: output, configuration: configuration, testAccuracy: testAccuracy)
    } catch {
        guard let state = finalState() else { throw error }
        let fallback = FileManager.default.temporaryDirectory.appendingPathComponent(
            Checkpoint.defaultURL(forOutput: output).lastPathComponent)
        for place in [checkpoint, fallback].compactMap({ $0 }) {
            guard (try? state.write(to: place, model: network)) != nil else { continue }
            throw ModelNotWritten(
                description: "could not write the model to \(output.path): \(error). The finished run is kept in "
                    + "\(place.path); `mnist export \(place.path) --output FILE` writes the model from it.")
        }
        throw error
    }
}

/// The final write of a model failed; says where the finished run is kept instead.
struct ModelNotWritten: Error, CustomStringConvertible {
    var description: String
}
