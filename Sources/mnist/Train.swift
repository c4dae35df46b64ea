// `mnist train`: train on one node, in this process (no sockets).
import ArgumentParser
import ConvNet
import Foundation
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the network on MNIST in this process and write the model.",
        discussion: "With no options this trains the default preset to about 99.2% test accuracy.")

    @OptionGroup var data: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.train")
        let dataset = try data.load(logger: logger)
        let configuration = training.configuration
        let renderer = ProgressRenderer(format: output.logFormat)
        let result = try SingleProcessTrainer(configuration: configuration).train(data: dataset, onEvent: renderer.render)
        try result.network.save(to: output.outputURL, configuration: configuration, testAccuracy: result.testAccuracy)
        logger.info(
            "test accuracy \(String(format: "%.2f", result.testAccuracy * 100))% after \(String(format: "%.1f", result.trainingSeconds)) s of training; model written to \(output.output)")
    }
}
