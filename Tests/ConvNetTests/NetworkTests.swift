// Whole-network properties: parameter count and tensor names of the presets, seeded
// initialisation, a finite-difference check of a small model, and batching invariance.
import XCTest
import TestSupport
@testable import ConvNet

final class NetworkTests: XCTestCase {
    static let tiny = Architecture(
        inputShape: [1, 6, 6],
        layers: [
            .convolution(outputChannels: 2, kernelSize: 3, padding: .same), .relu, .maxPool,
            .convolution(outputChannels: 3, kernelSize: 3, padding: .valid), .relu,
            .flatten, .dropout(rate: 0.3), .dense(outputs: 4),
        ])

    func testClassicHas34826ParametersInPyTorchLayout() throws {
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 1)
        XCTAssertEqual(network.parameterCount, 34_826)
        XCTAssertEqual(network.gradients.count, 34_826)
        XCTAssertEqual(
            network.layout.tensors.map(\.name),
            ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias"])
        XCTAssertEqual(
            network.layout.tensors.map(\.shape), [[32, 1, 3, 3], [32], [64, 32, 3, 3], [64], [10, 1600], [10]])
        XCTAssertEqual(network.layout.tensors.last?.range.upperBound, 34_826)
        XCTAssertEqual(network.classCount, 10)
        XCTAssertEqual(network.inputCount, 784)
    }

    func testEveryPresetBuildsAndHasASummary() throws {
        for preset in ModelPreset.all {
            let network = try Network(architecture: preset.architecture, seed: 3)
            print("preset \(preset.name): \(network.parameterCount) parameters")
            XCTAssertFalse(preset.summary.isEmpty)
            XCTAssertEqual(network.classCount, 10)
            XCTAssertEqual(ModelPreset.named(preset.name)?.name, preset.name)
        }
        XCTAssertNil(ModelPreset.named("nonsense"))
    }

    func testSeededInitialisationIsBitIdentical() throws {
        let a = try Network(architecture: ModelPreset.classic.architecture, seed: 7)
        let b = try Network(architecture: ModelPreset.classic.architecture, seed: 7)
        let c = try Network(architecture: ModelPreset.classic.architecture, seed: 8)
        XCTAssertEqual(a.parameters.map(\.bitPattern), b.parameters.map(\.bitPattern))
        XCTAssertNotEqual(a.parameters, c.parameters)
        // Weights are within the He limit and not all equal; biases start at zero.
        let conv1 = a.layout.tensors[0]
        let limit = (6.0 / 9.0).squareRoot()
        XCTAssertTrue(a.parameters[conv1.range].allSatisfy { abs(Double($0)) <= limit })
        XCTAssertTrue(a.parameters[a.layout.tensors[1].range].allSatisfy { $0 == 0 })
    }

    func testArchitectureJSONRoundTrip() throws {
        for preset in ModelPreset.all {
            let json = preset.architecture.jsonString()
            XCTAssertEqual(try Architecture(jsonString: json), preset.architecture)
        }
    }

    func testInvalidArchitecturesAreRejected() {
        XCTAssertThrowsError(try Network(architecture: Architecture(layers: [.dense(outputs: 10)]), seed: 0))
        XCTAssertThrowsError(
            try Network(architecture: Architecture(layers: [.flatten, .maxPool, .dense(outputs: 10)]), seed: 0))
        XCTAssertThrowsError(
            try Network(
                architecture: Architecture(layers: [.convolution(outputChannels: 4, kernelSize: 3, padding: .valid)]),
                seed: 0))
        XCTAssertThrowsError(
            try Network(
                architecture: Architecture(layers: [.flatten, .dropout(rate: 1), .dense(outputs: 10)]), seed: 0))
        XCTAssertThrowsError(
            try Network(
                architecture: Architecture(
                    inputShape: [1, 2, 2],
                    layers: [
                        .convolution(outputChannels: 4, kernelSize: 5, padding: .valid), .flatten, .dense(outputs: 10),
                    ]), seed: 0))
    }

    func testWholeModelGradientMatchesFiniteDifferences() throws {
        let network = try Network(architecture: Self.tiny, seed: 5)
        var generator = TestGenerator(seed: 31)
        let images = generator.uniformArray(3 * 36, 0, 1)
        let labels: [UInt8] = [1, 3, 0]
        // Non-zero biases.
        for view in network.layout.tensors where view.name.hasSuffix(".bias") {
            for index in view.range { network.parameters[index] = generator.uniform(-0.2, 0.2) }
        }
        network.zeroGradients()
        network.accumulateGradients(images: images, labels: labels, dropoutSeed: 99)
        let analytic = network.gradients
        let point = network.parameters
        FiniteDifference.check(
            analytic: analytic,
            of: { parameters in
                network.parameters = parameters
                network.zeroGradients()
                return network.accumulateGradients(images: images, labels: labels, dropoutSeed: 99).lossSum
            },
            at: point, step: 1e-3, tolerance: 3e-3, "tiny model parameter gradient")
    }

    func testGradientDoesNotDependOnInternalChunking() throws {
        let network = try Network(architecture: Self.tiny, seed: 6)
        var generator = TestGenerator(seed: 32)
        let images = generator.uniformArray(7 * 36, 0, 1)
        let labels: [UInt8] = [0, 1, 2, 3, 0, 1, 2]
        network.zeroGradients()
        let whole = network.accumulateGradients(images: images, labels: labels, dropoutSeed: 5)
        let wholeGradient = network.gradients
        network.chunkSize = 3
        network.zeroGradients()
        let chunked = network.accumulateGradients(images: images, labels: labels, dropoutSeed: 5)
        XCTAssertEqual(whole.lossSum, chunked.lossSum, accuracy: 1e-4)
        XCTAssertEqual(whole.correct, chunked.correct)
        assertClose(network.gradients, wholeGradient, absoluteTolerance: 1e-5, "gradient, chunks of 3 vs 7")
        // Sum of shard gradients equals the whole-batch gradient when each shard's dropout seed
        // is derived the same way; here: gradients add.
        network.zeroGradients()
        network.accumulateGradients(images: images, labels: labels, dropoutSeed: 5)
        network.accumulateGradients(images: images, labels: labels, dropoutSeed: 5)
        assertClose(network.gradients, wholeGradient.map { 2 * $0 }, absoluteTolerance: 1e-5, "gradients accumulate")
    }

    func testProbabilitiesAreNormalisedAndDeterministic() throws {
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 9)
        network.chunkSize = 5
        var generator = TestGenerator(seed: 33)
        let images = generator.uniformArray(12 * 784, 0, 1)
        let probabilities = network.probabilities(images: images)
        XCTAssertEqual(probabilities.count, 120)
        for n in 0..<12 {
            XCTAssertEqual(probabilities[(n * 10)..<(n * 10 + 10)].reduce(0, +), 1, accuracy: 1e-5)
        }
        network.chunkSize = 256
        assertClose(
            network.probabilities(images: images), probabilities, absoluteTolerance: 1e-6,
            "probabilities, chunk 5 vs 256")
        XCTAssertEqual(network.predictions(images: images).count, 12)
    }

    /// The features are what the last layer reads: the last dense layer's weights applied to them give
    /// the logits whose softmax `probabilities` returns, for the default preset (batch normalisation
    /// folded) and another chunking.
    func testFeaturesAreWhatTheLastLayerReads() throws {
        let network = try Network(architecture: ModelPreset.fast.architecture, seed: 4)
        network.chunkSize = 3
        var generator = TestGenerator(seed: 71)
        let images = generator.uniformArray(7 * 784, -0.5, 2.5)
        let features = network.features(images: images)
        XCTAssertEqual(network.featureCount, 128)
        XCTAssertEqual(features.count, 7 * 128)
        XCTAssertTrue(features.allSatisfy { $0 >= 0 }, "after the ReLU")
        XCTAssertGreaterThan(Set(features).count, 100)
        let tensors = network.namedTensors
        let weight = try XCTUnwrap(tensors.dropLast().last), bias = try XCTUnwrap(tensors.last)
        XCTAssertEqual(weight.shape, [10, 128])
        let probabilities = network.probabilities(images: images)
        for n in 0..<7 {
            let logits = (0..<10).map { k in
                (0..<128).reduce(Double(bias.values[k])) {
                    $0 + Double(weight.values[k * 128 + $1]) * Double(features[n * 128 + $1])
                }
            }
            let largest = logits.max() ?? 0
            let total = logits.map { exp($0 - largest) }.reduce(0, +)
            for k in 0..<10 {
                XCTAssertEqual(Double(probabilities[n * 10 + k]), exp(logits[k] - largest) / total, accuracy: 1e-5)
            }
        }
        network.chunkSize = 64
        assertClose(network.features(images: images), features, absoluteTolerance: 1e-5, "features, chunk 3 vs 64")
    }
}
