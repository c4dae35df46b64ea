// Batch normalisation: its gradients against finite differences (image and flat layouts, the whole
// network), its statistics against a naive computation, calibration's independence of the thread
// count, and folding: the folded plain network computes what the network with population
// statistics computes.
import XCTest
import TestSupport
@testable import ConvNet

final class BatchNormalizationTests: XCTestCase {
    static let small = Architecture(
        inputShape: [1, 6, 6],
        layers: [
            .convolution(outputChannels: 3, kernelSize: 3, padding: .same), .batchNorm, .relu, .maxPool,
            .convolution(outputChannels: 4, kernelSize: 3, padding: .valid), .batchNorm, .relu,
            .flatten, .dense(outputs: 5), .batchNorm, .relu, .dropout(rate: 0.2), .dense(outputs: 3),
        ])

    /// Batch normalisation after pooling and ReLU, folded into the layer after it: a valid convolution
    /// (the first one direct, handing the second its channels last through the normalisation), and a
    /// dense layer after flatten.
    static let after = Architecture(
        inputShape: [1, 10, 10],
        layers: [
            .convolution(outputChannels: 8, kernelSize: 3, padding: .valid), .relu, .maxPool, .batchNorm,
            .convolution(outputChannels: 8, kernelSize: 3, padding: .valid), .relu, .batchNorm,
            .flatten, .dropout(rate: 0.2), .dense(outputs: 6), .relu, .batchNorm, .dense(outputs: 3),
        ])

    override func tearDown() { ComputeThreads.configure(threads: 2) }

    /// Parameters with γ and β away from 1 and 0, so that the scale and shift are exercised.
    private func network(seed: UInt64, _ architecture: Architecture = small) throws -> Network {
        let network = try Network(architecture: architecture, seed: seed)
        var generator = TestGenerator(seed: seed + 100)
        for view in network.layout.tensors where view.name.hasPrefix("bn") || view.name.hasSuffix(".bias") {
            for index in view.range { network.parameters[index] = generator.uniform(0.5, 1.5) }
        }
        return network
    }

    private func layerGradients(_ layer: BatchNormalization, batch: Int, input: [Float], _ label: String) {
        var generator = TestGenerator(seed: 3)
        let parameters = generator.uniformArray(layer.parameterCount, 0.5, 1.5)
        let weights = generator.uniformArray(input.count)
        let harness = LayerHarness(layer: layer, batch: batch)
        let (inputGradient, parameterGradient) = harness.gradients(
            input: input, parameters: parameters, weights: weights)
        FiniteDifference.check(
            analytic: inputGradient, of: { harness.loss(input: $0, parameters: parameters, weights: weights) },
            at: input, step: 1e-2, tolerance: 2e-3, "\(label) input gradient")
        FiniteDifference.check(
            analytic: parameterGradient, of: { harness.loss(input: input, parameters: $0, weights: weights) },
            at: parameters, step: 1e-2, tolerance: 2e-3, "\(label) parameter gradient")
    }

    func testLayerGradientsMatchFiniteDifferences() {
        var generator = TestGenerator(seed: 1)
        let image = BatchNormalization(name: "bn1", input: .image(3, 4, 5), statisticsOffset: 0)
        layerGradients(image, batch: 2, input: generator.uniformArray(2 * 60, -2, 2), "image")
        let flat = BatchNormalization(name: "bn2", input: .flat(6), statisticsOffset: 0)
        layerGradients(flat, batch: 5, input: generator.uniformArray(5 * 6, -2, 2), "flat")
    }

    func testTheOutputIsNormalisedPerChannel() {
        var generator = TestGenerator(seed: 2)
        let layer = BatchNormalization(name: "bn1", input: .image(2, 3, 3), statisticsOffset: 0)
        let input = generator.uniformArray(4 * 18, 3, 9)
        let output = LayerHarness(layer: layer, batch: 4).forward(input: input, parameters: [2, 2, 0.5, -1])
        for c in 0..<2 {
            let values = output[(c * 36)..<((c + 1) * 36)].map(Double.init)
            let mean = values.reduce(0, +) / 36
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 36
            XCTAssertEqual(mean, c == 0 ? 0.5 : -1, accuracy: 1e-5, "β")
            XCTAssertEqual(variance, 4, accuracy: 1e-3, "γ²")
        }
    }

    func testWholeNetworkGradientMatchesFiniteDifferences() throws {
        try checkNetworkGradient(Self.small)
        try checkNetworkGradient(Self.after)
    }

    private func checkNetworkGradient(_ architecture: Architecture) throws {
        let network = try network(seed: 5, architecture)
        var generator = TestGenerator(seed: 31)
        let images = generator.uniformArray(6 * network.inputCount, 0, 1)
        let labels: [UInt8] = [1, 2, 0, 1, 2, 0]
        let keys = Array(0..<6)
        func loss(_ parameters: [Float]) -> (Double, [Float]) {
            network.parameters = parameters
            var gradient = [Float](repeating: 0, count: network.parameterCount)
            let statistics = images.withUnsafeBufferPointer { images in
                labels.withUnsafeBufferPointer { labels in
                    keys.withUnsafeBufferPointer { keys in
                        gradient.withUnsafeMutableBufferPointer { slab in
                            network.microBatchGradients(
                                images: images, labels: labels, sampleKeys: keys, microBatches: [0..<6],
                                dropoutSeed: 9, into: slab)
                        }
                    }
                }
            }
            return (statistics[0].lossSum, gradient)
        }
        let point = network.parameters
        FiniteDifference.check(
            analytic: loss(point).1, of: { loss($0).0 }, at: point, step: 1e-3, tolerance: 5e-3,
            "network with batch normalisation")
    }

    /// The first layer's statistics against a naive computation from the reference convolution.
    func testCalibrationMeasuresTheMeanOfBatchMeansAndUnbiasedVariances() throws {
        let network = try network(seed: 7)
        var generator = TestGenerator(seed: 8)
        let count = 10, ghost = 4
        let images = generator.uniformArray(count * 36, 0, 1)
        images.withUnsafeBufferPointer { network.calibrateNormalization(images: $0, count: count, ghostBatch: ghost) }
        let weight = network.layout.tensor(named: "conv1.weight")!, bias = network.layout.tensor(named: "conv1.bias")!
        var means = [Double](repeating: 0, count: 3), variances = [Double](repeating: 0, count: 3)
        let batches = [0..<4, 4..<8, 8..<10]
        for samples in batches {
            for c in 0..<3 {
                var values: [Double] = []
                for n in samples {
                    for y in 0..<6 {
                        for x in 0..<6 {
                            var sum = Double(network.parameters[bias.offset + c])
                            for dy in -1...1 {
                                for dx in -1...1 where (0..<6).contains(y + dy) && (0..<6).contains(x + dx) {
                                    sum +=
                                        Double(network.parameters[weight.offset + c * 9 + (dy + 1) * 3 + dx + 1])
                                        * Double(images[n * 36 + (y + dy) * 6 + x + dx])
                                }
                            }
                            values.append(sum)
                        }
                    }
                }
                let mean = values.reduce(0, +) / Double(values.count)
                means[c] += mean / 3
                variances[c] += values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1) / 3
            }
        }
        let mean = network.normalizationLayout.tensor(named: "bn1.running_mean")!
        let variance = network.normalizationLayout.tensor(named: "bn1.running_var")!
        for c in 0..<3 {
            XCTAssertEqual(Double(network.normalization[mean.offset + c]), means[c], accuracy: 1e-4)
            XCTAssertEqual(Double(network.normalization[variance.offset + c]), variances[c], accuracy: 1e-4)
        }
        XCTAssertEqual(network.normalizationLayout.tensors.map(\.name).last, "bn3.running_var")
    }

    func testCalibrationHasTheSameBitsForAnyThreadCount() throws {
        var generator = TestGenerator(seed: 9)
        let images = generator.uniformArray(70 * 36, 0, 1)
        var results: [[UInt32]] = []
        for threads in [1, 2, 3] {
            ComputeThreads.configure(threads: threads)
            let network = try network(seed: 11)
            images.withUnsafeBufferPointer { network.calibrateNormalization(images: $0, count: 70, ghostBatch: 8) }
            results.append(network.normalization.map(\.bitPattern))
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }

    func testTheFoldedNetworkComputesWhatPopulationStatisticsGive() throws {
        try checkFolding(Self.small)
        try checkFolding(Self.after)
        // The second exercises the channels-last layout between a direct convolution and the next.
        let layers = try Network(architecture: Self.after, seed: 0).laneLayers
        XCTAssertEqual((layers[0] as? Convolution)?.isDirect, true)
        XCTAssertEqual((layers[1] as? BatchNormalization)?.channelsLast, true)
    }

    private func checkFolding(_ architecture: Architecture) throws {
        let network = try network(seed: 13, architecture)
        let side = network.inputCount
        var generator = TestGenerator(seed: 14)
        let calibration = generator.uniformArray(64 * side, 0, 1)
        calibration.withUnsafeBufferPointer { network.calibrateNormalization(images: $0, count: 64) }
        let folded = try network.folded()
        XCTAssertFalse(folded.hasBatchNormalization)
        XCTAssertFalse(folded.architecture.layers.contains(.batchNorm))
        XCTAssertEqual(
            folded.layout.tensors.map(\.name),
            network.layout.tensors.map(\.name).filter { !$0.hasPrefix("bn") })
        let images = generator.uniformArray(9 * side, 0, 1)
        let expected = network.probabilities(images: images), actual = folded.probabilities(images: images)
        assertClose(actual, expected, absoluteTolerance: 1e-5, "folded probabilities")
        // Population statistics, not the batch's: a sample's output does not depend on the others.
        let alone = network.probabilities(images: Array(images[0..<side]))
        assertClose(alone, Array(expected[0..<3]), absoluteTolerance: 1e-6, "one sample alone")
        // And the statistics matter: uncalibrated, the answer differs.
        let uncalibrated = try Network(architecture: architecture, seed: 13)
        uncalibrated.parameters = network.parameters
        XCTAssertGreaterThan(
            zip(uncalibrated.probabilities(images: images), expected).map { abs($0 - $1) }.max() ?? 0, 1e-3)
    }

    /// Only where it can be folded: next to a convolution or dense layer, never with zero padding,
    /// pooling or ReLU between it and the layer it folds into.
    func testBatchNormalizationMustBeFoldable() {
        let convolution = LayerDescription.convolution(outputChannels: 2, kernelSize: 3, padding: .valid)
        let padded = LayerDescription.convolution(outputChannels: 2, kernelSize: 3, padding: .same)
        for layers: [LayerDescription] in [
            [convolution, .relu, .batchNorm, .maxPool, .flatten, .dense(outputs: 2)],
            [convolution, .relu, .batchNorm, padded, .flatten, .dense(outputs: 2)],
            [convolution, .relu, .batchNorm, .relu, .flatten, .dense(outputs: 2)],
            [convolution, .flatten, .dense(outputs: 2), .relu, .batchNorm],
        ] {
            XCTAssertThrowsError(
                try Network(architecture: Architecture(inputShape: [1, 8, 8], layers: layers), seed: 0), "\(layers)")
        }
        for layers: [LayerDescription] in [
            [.batchNorm, convolution, .flatten, .dense(outputs: 2)],
            [convolution, .relu, .batchNorm, .flatten, .dropout(rate: 0.5), .dense(outputs: 2)],
        ] {
            XCTAssertNoThrow(
                try Network(architecture: Architecture(inputShape: [1, 8, 8], layers: layers), seed: 0), "\(layers)")
        }
    }
}
