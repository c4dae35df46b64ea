// The `mnist` command: a root command and its subcommand list. Each subcommand lives in its own file.
import ArgumentParser

@main
struct MNISTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mnist",
        abstract: "Train a convolutional network on MNIST, on one machine or across many over ZeroMQ.",
        version: "0.1.0",
        subcommands: [Fetch.self, Train.self, Coordinator.self, Worker.self, Evaluate.self, Predict.self, Bench.self])
}
