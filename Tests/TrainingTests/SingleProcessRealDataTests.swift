// Opt-in: trains on the real MNIST IDX files when MNIST_IDX_DIR names a folder holding
// train-images-idx3-ubyte etc. (uncompressed), and prints the figures. Run in release:
//   MNIST_IDX_DIR=/root/.cache/mnist MNIST_BENCH=1 swift test -c release -Xswiftc -enable-testing \
//       --filter SingleProcessRealDataTests
// Optional: MNIST_MODEL, MNIST_EPOCHS, MNIST_BATCH, MNIST_LR, MNIST_OPTIMIZER, MNIST_SCHEDULE,
// MNIST_AUGMENT=0/1, MNIST_SEED, MNIST_SAVE=path.safetensors. It reads raw IDX itself so it does not depend on the MNIST reader.
import XCTest
import Foundation
import ConvNet
import MNIST
@testable import Training

final class SingleProcessRealDataTests: XCTestCase {
    private static func readIDX(_ url: URL, headerLength: Int) throws -> [UInt8] {
        let data = try Data(contentsOf: url)
        guard data.count > headerLength else { throw CocoaError(.fileReadCorruptFile) }
        return [UInt8](data.dropFirst(headerLength))
    }

    private static func load(_ directory: URL, _ prefix: String) throws -> LabeledImages {
        let pixels = try readIDX(directory.appendingPathComponent("\(prefix)-images-idx3-ubyte"), headerLength: 16)
        let labels = try readIDX(directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte"), headerLength: 8)
        return LabeledImages(rows: 28, columns: 28, pixels: pixels, labels: labels)
    }

    func testTrainOnRealMNIST() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let folder = environment["MNIST_IDX_DIR"] else { throw XCTSkip("set MNIST_IDX_DIR to run") }
        let directory = URL(fileURLWithPath: folder)
        let data = MNISTData(train: try Self.load(directory, "train"), test: try Self.load(directory, "t10k"))
        var configuration = TrainingConfiguration()
        if let value = environment["MNIST_MODEL"] { configuration.model = value }
        if let value = environment["MNIST_EPOCHS"].flatMap(Int.init) { configuration.epochs = value }
        if let value = environment["MNIST_BATCH"].flatMap(Int.init) { configuration.batchSize = value }
        if let value = environment["MNIST_LR"].flatMap(Double.init) { configuration.learningRate = value }
        if let value = environment["MNIST_OPTIMIZER"].flatMap(OptimizerKind.init) { configuration.optimizer = value }
        if let value = environment["MNIST_SCHEDULE"].flatMap(LearningRateSchedule.init) { configuration.schedule = value }
        if let value = environment["MNIST_AUGMENT"] { configuration.augment = value == "1" }
        if let value = environment["MNIST_SEED"].flatMap(UInt64.init) { configuration.seed = value }
        print("configuration: \(configuration.jsonString())")
        var reached99: Double?
        let result = try SingleProcessTrainer(configuration: configuration).train(data: data) { event in
            if case let .epochCompleted(summary) = event {
                print(String(
                    format: "epoch %d/%d loss %.4f train %.4f test %.4f  %.1f s  %.0f img/s  total %.1f s",
                    summary.epoch, summary.epochs, summary.loss, summary.trainAccuracy, summary.testAccuracy,
                    summary.seconds, summary.imagesPerSecond, summary.trainingSeconds))
                if reached99 == nil, summary.testAccuracy >= 0.99 { reached99 = summary.trainingSeconds }
            }
        }
        print("final test accuracy \(result.testAccuracy), 99.0% after \(reached99.map { String(format: "%.1f s", $0) } ?? "never")")
        print("per-class recall \(result.testEvaluation.recall.map { String(format: "%.4f", $0) })")
        let firstTen = InputNormalization.normalized(Array(data.test.pixels[0..<(10 * 784)]))
        let probabilities = result.network.probabilities(images: firstTen)
        print("first 10 test predictions \(result.network.predictions(images: firstTen))")
        print("max probabilities \((0..<10).map { n in probabilities[(n * 10)..<(n * 10 + 10)].max() ?? 0 })")
        if let path = environment["MNIST_SAVE"] {
            try result.network.save(to: URL(fileURLWithPath: path), configuration: configuration, testAccuracy: result.testAccuracy)
        }
    }

    func testBenchmark() throws {
        guard ProcessInfo.processInfo.environment["MNIST_BENCH"] != nil else { throw XCTSkip("set MNIST_BENCH=1 to run") }
        let figures = try Benchmark.run(model: ModelPreset.named(ProcessInfo.processInfo.environment["MNIST_MODEL"] ?? "classic") ?? .classic)
        print("benchmark: \(figures)")
    }
}
