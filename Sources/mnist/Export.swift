// `mnist export`: the model file of a checkpoint, the same file the run writes when it finishes.
import ArgumentParser
import ConvNet
import Foundation
import Training

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the model held by a checkpoint as a model file.",
        discussion: """
            A checkpoint (from `train` or `coordinator`) holds the model as it stands, the moving average when \
            one is kept, beside the training state. This writes it as a model file with its test accuracy, \
            as the run writes it when it finishes: a checkpoint kept after the final write failed exports to \
            the same bytes as the file that write would have made.
            """)

    @Argument(help: ArgumentHelp("The checkpoint (safetensors).", valueName: "checkpoint"))
    var checkpoint: String

    @Option(help: ArgumentHelp("Where to write the model (safetensors).", valueName: "path"))
    var output = "model.safetensors"

    @OptionGroup var data: DataOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        let source = URL(fileURLWithPath: checkpoint).standardizedFileURL
        guard source != URL(fileURLWithPath: output).standardizedFileURL else {
            throw ValidationError("--output: name another file than the checkpoint itself")
        }
        try refuseNonRegularFile(output, flag: "--output")
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.export")
        let url = URL(fileURLWithPath: checkpoint)
        let (network, _) = try Network.loadChecked(from: url)
        let state = try Checkpoint.read(from: url)
        let dataset = try data.load(logger: logger)
        let evaluation = Evaluation(network: network, images: dataset.test)
        try network.save(
            to: URL(fileURLWithPath: output), configuration: state.configuration, testAccuracy: evaluation.accuracy)
        let total =
            try SingleProcessTrainer(configuration: state.configuration).stepsPerEpoch(trainCount: dataset.train.count)
            * state.configuration.epochs
        logger.info(
            "wrote the model after step \(state.step) of \(total) to \(output): test accuracy \(String(format: "%.2f", evaluation.accuracy * 100))%"
        )
    }
}
