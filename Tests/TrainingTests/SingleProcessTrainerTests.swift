// The single-process trainer on small generated data: configuration validation, normalisation,
// events, determinism, evaluation and saving. The real-data run is in SingleProcessRealDataTests.
import XCTest
import Foundation
import ConvNet
import DataParallel
import MNIST
import TestSupport
@testable import Training

final class SingleProcessTrainerTests: XCTestCase {
    /// 28x28 images of class k: a bright 6x6 square at a class-specific place, plus noise.
    static func makeImages(count: Int, seed: UInt64) -> LabeledImages {
        var generator = TestGenerator(seed: seed)
        var pixels = [UInt8](repeating: 0, count: count * 784), labels = [UInt8]()
        for n in 0..<count {
            let label = n % 10
            let top = 3 + (label / 5) * 12 + Int(generator.next() % 3),
                left = 2 + (label % 5) * 5 + Int(generator.next() % 2)
            for y in top..<(top + 6) { for x in left..<min(28, left + 4) { pixels[n * 784 + y * 28 + x] = 200 } }
            for _ in 0..<20 {
                pixels[n * 784 + Int(generator.next() % 784)] = UInt8(truncatingIfNeeded: generator.next())
            }
            labels.append(UInt8(label))
        }
        return LabeledImages(rows: 28, columns: 28, pixels: pixels, labels: labels)
    }

    func testValidationNamesTheFlag() {
        var configuration = TrainingConfiguration()
        XCTAssertNoThrow(try configuration.validate())
        let cases: [(WritableKeyPath<TrainingConfiguration, Int>, Int, String)] = [
            (\.epochs, 0, "--epochs"), (\.batchSize, 0, "--batch-size"), (\.threads, 0, "--threads"),
        ]
        for (path, value, flag) in cases {
            var bad = configuration
            bad[keyPath: path] = value
            XCTAssertThrowsError(try bad.validate()) {
                XCTAssertEqual(($0 as? TrainingConfiguration.ValidationError)?.flag, flag)
            }
        }
        configuration.learningRate = -1
        XCTAssertThrowsError(try configuration.validate()) { XCTAssertTrue("\($0)".hasPrefix("--learning-rate")) }
        configuration = TrainingConfiguration()
        configuration.model = "huge"
        XCTAssertThrowsError(try configuration.validate()) { XCTAssertTrue("\($0)".contains("classic"), "\($0)") }
    }

    func testAverageDecayIsValidatedAndOldFilesDecodeWithoutIt() throws {
        var configuration = TrainingConfiguration()
        for bad in [1.0, -0.1, .nan] {
            configuration.averageDecay = bad
            XCTAssertThrowsError(try configuration.validate()) {
                XCTAssertEqual(($0 as? TrainingConfiguration.ValidationError)?.flag, "--average-decay")
            }
        }
        // A configuration recorded before the average existed: the weights were saved as trained.
        let old =
            #"{"augment":false,"batchSize":64,"epochs":3,"learningRate":0.02,"model":"classic","#
            + #""optimizer":"sgd","schedule":"constant","seed":5,"threads":1,"weightDecay":0}"#
        let decoded = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(old.utf8))
        XCTAssertEqual(decoded.averageDecay, 0)
        XCTAssertEqual(decoded.batchSize, 64)
        XCTAssertEqual(decoded.optimizer, .sgd)
        XCTAssertFalse(decoded.augment)
        let current = TrainingConfiguration()
        XCTAssertEqual(
            try JSONDecoder().decode(TrainingConfiguration.self, from: Data(current.jsonString().utf8)), current)
    }

    /// The average follows average = d * average + (1 - d) * weights after each update, with
    /// d = min(decay, (1 + t) / (10 + t)) at update t (1-based), recomputed here in Double.
    func testMovingAverageOfTheWeights() {
        var configuration = TrainingConfiguration()
        configuration.optimizer = .sgd
        configuration.schedule = .constant
        configuration.learningRate = 0.1
        configuration.averageDecay = 0.6
        var update = ParameterUpdate(configuration: configuration, parameterCount: 3, totalSteps: 20)
        var parameters: [Float] = [1, -2, 0.5]
        XCTAssertEqual(update.model(of: parameters), parameters, "no update yet: the weights themselves")
        var expected = [Double]()
        var generator = TestGenerator(seed: 8)
        for t in 1...20 {
            update.apply(meanGradient: generator.uniformArray(3), to: &parameters)
            let weights = parameters.map(Double.init)
            if t == 1 {
                expected = weights
            } else {
                let decay = min(0.6, Double(1 + t) / Double(10 + t))
                expected = zip(expected, weights).map { decay * $0 + (1 - decay) * $1 }
            }
        }
        assertClose(update.model(of: parameters), expected.map(Float.init), absoluteTolerance: 1e-6, "average")
        XCTAssertNotEqual(update.model(of: parameters), parameters, "the average lags the weights")

        configuration.averageDecay = 0
        var plain = ParameterUpdate(configuration: configuration, parameterCount: 3, totalSteps: 20)
        plain.apply(meanGradient: [1, 1, 1], to: &parameters)
        XCTAssertEqual(plain.model(of: parameters), parameters, "decay 0 keeps no average")
    }

    func testNormalisation() {
        XCTAssertEqual(InputNormalization.value(0), -0.1307 / 0.3081, accuracy: 1e-6)
        XCTAssertEqual(InputNormalization.value(255), (1 - 0.1307) / 0.3081, accuracy: 1e-6)
        XCTAssertEqual(InputNormalization.normalized([0, 255]).count, 2)
    }

    func testTrainingLearnsReportsAndIsDeterministic() throws {
        let data = MNISTData(train: Self.makeImages(count: 300, seed: 1), test: Self.makeImages(count: 100, seed: 2))
        var configuration = TrainingConfiguration()
        configuration.model = "classic"
        configuration.epochs = 3
        configuration.batchSize = 32
        configuration.augment = true
        var events = [TrainingEvent]()
        let result = try SingleProcessTrainer(configuration: configuration).train(data: data) { events.append($0) }
        let summaries = events.compactMap { event -> EpochSummary? in
            if case let .epochCompleted(summary) = event { return summary }
            return nil
        }
        let batches = events.filter { if case .batchCompleted = $0 { return true } else { return false } }
        XCTAssertEqual(summaries.count, 3)
        XCTAssertEqual(batches.count, 3 * 10)
        if case let .started(_, parameters, trainCount, _, stepsPerEpoch, totalSteps) = events.first {
            XCTAssertEqual(parameters, 34_826)
            XCTAssertEqual(trainCount, 300)
            XCTAssertEqual(stepsPerEpoch, 10)
            XCTAssertEqual(totalSteps, 30)
        } else {
            XCTFail("first event is not .started")
        }
        print("synthetic MNIST-like: \(summaries.map { ($0.loss, $0.testAccuracy) })")
        XCTAssertLessThan(summaries[2].loss, summaries[0].loss)
        XCTAssertGreaterThanOrEqual(result.testAccuracy, 0.9)
        // Evaluation is consistent.
        let evaluation = result.testEvaluation
        XCTAssertEqual(evaluation.confusion.flatMap { $0 }.reduce(0, +), 100)
        XCTAssertEqual(evaluation.precision.count, 10)
        XCTAssertEqual(evaluation.recall.count, 10)
        // Same seed, same parameters.
        let again = try SingleProcessTrainer(configuration: configuration).train(data: data)
        XCTAssertEqual(again.network.parameters.map(\.bitPattern), result.network.parameters.map(\.bitPattern))

        // Save and reload with metadata.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "trainer-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try result.network.save(to: url, configuration: configuration, testAccuracy: result.testAccuracy)
        let (loaded, metadata) = try Network.load(from: url)
        XCTAssertEqual(loaded.parameters, result.network.parameters)
        XCTAssertEqual(metadata[ModelMetadataKey.inputMean], "0.1307")
        XCTAssertEqual(metadata[ModelMetadataKey.inputStandardDeviation], "0.3081")
        let recorded = try JSONDecoder().decode(
            TrainingConfiguration.self, from: Data((metadata[ModelMetadataKey.trainingConfiguration] ?? "").utf8))
        XCTAssertEqual(recorded, configuration)
        XCTAssertEqual(Evaluation(network: loaded, images: data.test), evaluation)
    }

    /// With batch normalisation the trainer evaluates and returns the calibrated, folded network: a
    /// plain network whose model file reads back and scores what the run reported, and a checkpoint
    /// whose model part is the same.
    func testBatchNormalizationIsFoldedIntoTheModelAndItsCheckpoint() throws {
        let data = MNISTData(train: Self.makeImages(count: 300, seed: 1), test: Self.makeImages(count: 100, seed: 2))
        var configuration = TrainingConfiguration()
        configuration.model = ModelPreset.fast.name
        configuration.epochs = 2
        configuration.batchSize = 32
        let directory = try TemporaryDirectory("batch-normalisation")
        let checkpoint = directory.file("c.safetensors")
        let result = try SingleProcessTrainer(configuration: configuration).train(
            data: data, checkpoints: CheckpointPolicy(url: checkpoint, everySteps: 5))
        XCTAssertFalse(result.network.hasBatchNormalization)
        XCTAssertFalse(result.network.architecture.layers.contains(.batchNorm))
        XCTAssertGreaterThanOrEqual(result.testAccuracy, 0.9)
        let url = directory.file("m.safetensors")
        try result.network.save(to: url, configuration: configuration, testAccuracy: result.testAccuracy)
        let (loaded, _) = try Network.loadChecked(from: url)
        XCTAssertEqual(Evaluation(network: loaded, images: data.test), result.testEvaluation)
        // The last periodic checkpoint (step 15 of 20) holds a plain model too, and the state to resume.
        let (inCheckpoint, metadata) = try Network.loadChecked(from: checkpoint)
        XCTAssertFalse(inCheckpoint.architecture.layers.contains(.batchNorm))
        XCTAssertEqual(metadata[Checkpoint.Key.step], "15")
        let state = try Checkpoint.read(
            from: checkpoint,
            parameterCount: try Network(architecture: ModelPreset.fast.architecture, seed: 0)
                .parameterCount)
        XCTAssertEqual(state.step, 15)
    }

    /// Two nodes holding keys 0..<8 and 8..<20 (the second knows its first sample as key 8) answer
    /// their micro-batches; added along the tree, the pieces have the bits of one node holding all 20,
    /// dropout and augmentation included: each sample's randomness is keyed by its key.
    func testShardsWithOffsetsReproduceTheBatchGradientBitForBit() throws {
        let images = Self.makeImages(count: 20, seed: 5)
        let tree = GradientTree(blockCount: 5)
        func computer(_ keys: Range<Int>) throws -> MicroBatchComputer {
            MicroBatchComputer(
                network: try Network(architecture: ModelPreset.classic.architecture, seed: 0),
                samples: images.subset(keys), firstKey: keys.lowerBound, seed: 9, augmentation: Self.affine, tree: tree)
        }
        let weights = try Network(architecture: ModelPreset.classic.architecture, seed: 6).parameters
        // Five micro-batches of four samples, block b holding keys 4b..<4b+4, visited in a shuffled order.
        let order: [UInt32] = [3, 1, 0, 2, 6, 7, 5, 4, 9, 8, 11, 10, 12, 15, 14, 13, 19, 16, 18, 17]
        func assignment(blocks: Range<Int>) -> StepAssignment {
            StepAssignment(
                step: 3, epoch: 1, weights: weights,
                sampleKeys: Array(order[(4 * blocks.lowerBound)..<(4 * blocks.upperBound)]),
                microBatches: blocks.map { MicroBatch(block: $0, sampleCount: 4) })
        }
        let whole = try computer(0..<20).report(for: assignment(blocks: 0..<5))
        let first = try computer(0..<8).report(for: assignment(blocks: 0..<2))
        let second = try computer(8..<20).report(for: assignment(blocks: 2..<5))
        XCTAssertEqual(first.pieces.map(\.blocks), [0..<2])
        XCTAssertEqual(second.pieces.map(\.blocks), [2..<4, 4..<5])
        let wholeSum = try XCTUnwrap(tree.sum(whole.pieces))
        let splitSum = try XCTUnwrap(tree.sum(first.pieces + second.pieces))
        XCTAssertEqual(splitSum.sampleCount, 20)
        XCTAssertEqual(splitSum.lossSum, wholeSum.lossSum)
        XCTAssertEqual(splitSum.gradient.map(\.bitPattern), wholeSum.gradient.map(\.bitPattern))
        // Another key offset changes the randomness, so the test above could fail.
        let shifted = MicroBatchComputer(
            network: try Network(architecture: ModelPreset.classic.architecture, seed: 0),
            samples: images.subset(8..<20), firstKey: 0, seed: 9, augmentation: Self.affine, tree: tree
        ).report(for: assignment(blocks: 2..<5))
        XCTAssertNotEqual(shifted.pieces.map(\.gradient), second.pieces.map(\.gradient))
    }

    private static let affine = Augmentation(shift: 2, rotation: 15, scale: 0.1, shear: 10)

    /// A micro-batch's gradient is the engine's plain single-threaded gradient of its samples.
    func testAMicroBatchGradientIsThePlainGradientOfItsSamples() throws {
        ComputeThreads.configure(threads: 1)
        defer { ComputeThreads.configure(threads: 2) }
        let images = Self.makeImages(count: 12, seed: 3)
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 4)
        let inputs = InputNormalization.normalized(images.pixels)
        let keys = Array(100..<112)
        var slab = [Float](repeating: .nan, count: 2 * network.parameterCount)
        let statistics = inputs.withUnsafeBufferPointer { inputs in
            images.labels.withUnsafeBufferPointer { labels in
                keys.withUnsafeBufferPointer { keys in
                    slab.withUnsafeMutableBufferPointer { slab in
                        network.microBatchGradients(
                            images: inputs, labels: labels, sampleKeys: keys, microBatches: [0..<5, 5..<12],
                            dropoutSeed: 77, into: slab)
                    }
                }
            }
        }
        for (index, range) in [0..<5, 5..<12].enumerated() {
            network.zeroGradients()
            let plain = network.accumulateGradients(
                images: Array(inputs[(range.lowerBound * 784)..<(range.upperBound * 784)]),
                labels: Array(images.labels[range]), dropoutSeed: 77, sampleKeys: Array(keys[range]))
            XCTAssertEqual(statistics[index], plain)
            let gradient = slab[(index * network.parameterCount)..<((index + 1) * network.parameterCount)]
            XCTAssertEqual(gradient.map(\.bitPattern), network.gradients.map(\.bitPattern))
        }
    }
}
