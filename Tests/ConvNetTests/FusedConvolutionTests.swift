// The fused conv -> ReLU -> max pool layer (both its direct kernel and its im2col path) against
// the three separate layers it replaces, which are checked against finite differences in
// LayerGradientTests; and the network's lanes against a single lane.
import XCTest
import TestSupport
@testable import ConvNet

final class FusedConvolutionTests: XCTestCase {
    /// Forward values, input gradient and parameter gradient of the fused layer against
    /// Convolution -> ReLU -> MaxPool run one after the other.
    private func checkFusedAgainstSeparate(
        channels: Int, height: Int, width: Int, outputs: Int, batch: Int, seed: UInt64, expectDirect: Bool
    ) throws {
        let shape = SampleShape.image(channels, height, width)
        let fused = try Convolution(
            name: "conv", input: shape, outputChannels: outputs, kernelSize: 3, padding: .valid, feedsRelu: true,
            pooled: true)
        XCTAssertEqual(fused.isDirect, expectDirect, "direct kernel chosen")
        let convolution = try Convolution(
            name: "conv", input: shape, outputChannels: outputs, kernelSize: 3, padding: .valid, feedsRelu: true)
        let relu = ReLU(input: convolution.outputShape)
        let pool = try MaxPool(input: convolution.outputShape)
        XCTAssertEqual(fused.outputShape, pool.outputShape)

        var generator = TestGenerator(seed: seed)
        // Distinct input values, so no pooling window holds two equal maxima by accident.
        var input = (0..<(batch * shape.count)).map { Float($0) / Float(batch * shape.count) - 0.4 }
        input.shuffle(using: &generator)
        let parameters = generator.uniformArray(fused.parameterCount, -0.5, 0.5)
        let weights = generator.uniformArray(batch * fused.outputShape.count)

        // Separate layers, forward then backward by hand.
        let convolved = LayerHarness(layer: convolution, batch: batch).forward(input: input, parameters: parameters)
        let rectified = LayerHarness(layer: relu, batch: batch).forward(input: convolved, parameters: [])
        let expected = LayerHarness(layer: pool, batch: batch).forward(input: rectified, parameters: [])
        let (poolInputGradient, _) = LayerHarness(layer: pool, batch: batch).gradients(
            input: rectified, parameters: [], weights: weights)
        let (reluInputGradient, _) = LayerHarness(layer: relu, batch: batch).gradients(
            input: convolved, parameters: [], weights: poolInputGradient)
        let (expectedInputGradient, expectedParameterGradient) = LayerHarness(layer: convolution, batch: batch)
            .gradients(input: input, parameters: parameters, weights: reluInputGradient)

        XCTAssertTrue(expectedInputGradient.contains { $0 != 0 }, "the input gradient is not trivially zero")
        XCTAssertTrue(expected.contains { $0 != 0 } && expected.contains { $0 == 0 }, "ReLU passes some, not all")
        let harness = LayerHarness(layer: fused, batch: batch)
        let label = "C\(channels) \(height)x\(width) O\(outputs) N\(batch)"
        assertClose(
            harness.forward(input: input, parameters: parameters), expected, absoluteTolerance: 1e-5,
            "\(label) forward")
        let (inputGradient, parameterGradient) = harness.gradients(
            input: input, parameters: parameters, weights: weights)
        assertClose(inputGradient, expectedInputGradient, absoluteTolerance: 1e-5, "\(label) input gradient")
        assertClose(
            parameterGradient, expectedParameterGradient, absoluteTolerance: 1e-4, "\(label) parameter gradient")
        // Inference (no winners kept) gives the same values as training.
        var inference = LayerHarness(layer: fused, batch: batch)
        inference.context.isTraining = false
        assertClose(
            inference.forward(input: input, parameters: parameters), expected, absoluteTolerance: 1e-5,
            "\(label) inference forward")
    }

    func testDirectKernelMatchesSeparateLayers() throws {
        // One input channel: the direct kernel. Odd and even sizes, channel counts that do and
        // do not fill whole vectors of eight.
        try checkFusedAgainstSeparate(
            channels: 1, height: 28, width: 28, outputs: 16, batch: 3, seed: 41, expectDirect: true)
        try checkFusedAgainstSeparate(
            channels: 1, height: 9, width: 12, outputs: 5, batch: 4, seed: 42, expectDirect: true)
        try checkFusedAgainstSeparate(
            channels: 1, height: 7, width: 6, outputs: 11, batch: 2, seed: 43, expectDirect: true)
    }

    func testIm2colPathMatchesSeparateLayers() throws {
        // 13x13 -> 11x11: the odd last row and column are never computed.
        try checkFusedAgainstSeparate(
            channels: 4, height: 13, width: 13, outputs: 6, batch: 3, seed: 44, expectDirect: false)
        try checkFusedAgainstSeparate(
            channels: 2, height: 8, width: 11, outputs: 3, batch: 5, seed: 45, expectDirect: false)
    }

    /// A direct convolution that hands its output channels last to an im2col convolution gives
    /// the same values and gradients as the pair in the channel-major layout.
    func testChannelsLastHandOverMatchesChannelMajor() throws {
        for padding in [Padding.valid, .same] {
            var generator = TestGenerator(seed: 47)
            let batch = 3
            let input = generator.uniformArray(batch * 28 * 28, 0, 1)
            func pair(channelsLast: Bool) throws -> (Convolution, Convolution) {
                let first = try Convolution(
                    name: "conv1", input: .image(1, 28, 28), outputChannels: 16, kernelSize: 3, padding: .valid,
                    feedsRelu: true, pooled: true)
                let second = try Convolution(
                    name: "conv2", input: first.outputShape, outputChannels: 6, kernelSize: 3, padding: padding,
                    feedsRelu: true, pooled: padding == .valid)
                first.outputChannelsLast = channelsLast
                second.inputChannelsLast = channelsLast
                return (first, second)
            }
            let (first, second) = try pair(channelsLast: false)
            let (firstLast, secondLast) = try pair(channelsLast: true)
            let firstParameters = generator.uniformArray(first.parameterCount, -0.5, 0.5)
            let secondParameters = generator.uniformArray(second.parameterCount, -0.3, 0.3)
            let weights = generator.uniformArray(batch * second.outputShape.count)

            let hidden = LayerHarness(layer: first, batch: batch).forward(input: input, parameters: firstParameters)
            let hiddenLast = LayerHarness(layer: firstLast, batch: batch).forward(
                input: input, parameters: firstParameters)
            // Same values, transposed: [C, N, H*W] against [N, H*W, C].
            let plane = first.outputShape.height * first.outputShape.width, channels = first.outputShape.channels
            for c in 0..<channels {
                for n in 0..<batch {
                    for p in 0..<plane {
                        XCTAssertEqual(
                            hidden[(c * batch + n) * plane + p], hiddenLast[(n * plane + p) * channels + c],
                            "hidden c\(c) n\(n) p\(p)")
                    }
                }
            }
            let label = "\(padding)"
            let output = LayerHarness(layer: second, batch: batch).forward(input: hidden, parameters: secondParameters)
            let outputLast = LayerHarness(layer: secondLast, batch: batch).forward(
                input: hiddenLast, parameters: secondParameters)
            assertClose(outputLast, output, absoluteTolerance: 1e-5, "\(label) output")

            let (hiddenGradient, secondGradient) = LayerHarness(layer: second, batch: batch).gradients(
                input: hidden, parameters: secondParameters, weights: weights)
            let (hiddenGradientLast, secondGradientLast) = LayerHarness(layer: secondLast, batch: batch).gradients(
                input: hiddenLast, parameters: secondParameters, weights: weights)
            assertClose(secondGradientLast, secondGradient, absoluteTolerance: 1e-4, "\(label) conv2 gradient")
            let (_, firstGradient) = LayerHarness(layer: first, batch: batch).gradients(
                input: input, parameters: firstParameters, weights: hiddenGradient)
            let (_, firstGradientLast) = LayerHarness(layer: firstLast, batch: batch).gradients(
                input: input, parameters: firstParameters, weights: hiddenGradientLast)
            assertClose(firstGradientLast, firstGradient, absoluteTolerance: 1e-4, "\(label) conv1 gradient")
            XCTAssertTrue(firstGradient.contains { $0 != 0 }, "conv1 gradient is not trivially zero")
        }
    }

    /// Winograd's F(2x2, 3x3) (inference, and training with its winners) against the channel-major
    /// im2col convolution followed by ReLU and max pooling as separate layers.
    func testWinogradMatchesSeparateLayers() throws {
        var generator = TestGenerator(seed: 48)
        for (channels, size, outputs, batch) in [(32, 13, 64, 3), (8, 9, 5, 2), (16, 12, 12, 4)] {
            let layer = try Convolution(
                name: "conv", input: .image(channels, size, size), outputChannels: outputs, kernelSize: 3,
                padding: .valid, feedsRelu: true, pooled: true)
            layer.inputChannelsLast = true
            XCTAssertTrue(WinogradConvolution.applies(to: layer))
            let plain = try Convolution(
                name: "conv", input: .image(channels, size, size), outputChannels: outputs, kernelSize: 3,
                padding: .valid, feedsRelu: true)
            let relu = ReLU(input: plain.outputShape)
            let pool = try MaxPool(input: plain.outputShape)
            let input = generator.uniformArray(batch * channels * size * size, 0, 1)  // [N, H, W, C]
            var channelMajor = [Float](repeating: 0, count: input.count)  // [C, N, H, W]
            for n in 0..<batch {
                for p in 0..<(size * size) {
                    for c in 0..<channels {
                        channelMajor[(c * batch + n) * size * size + p] = input[(n * size * size + p) * channels + c]
                    }
                }
            }
            let label = "C\(channels) \(size)x\(size) O\(outputs) N\(batch)"
            /// The separate layers' output for `parameters`.
            func reference(_ parameters: [Float]) -> [Float] {
                let convolved = LayerHarness(layer: plain, batch: batch).forward(
                    input: channelMajor, parameters: parameters)
                let rectified = LayerHarness(layer: relu, batch: batch).forward(input: convolved, parameters: [])
                return LayerHarness(layer: pool, batch: batch).forward(input: rectified, parameters: [])
            }
            var inference = LayerHarness(layer: layer, batch: batch)
            inference.context.isTraining = false
            let training = LayerHarness(layer: layer, batch: batch)
            // New weights on the same layer the second time: its cached transform must not be reused.
            let first = generator.uniformArray(layer.parameterCount, -0.2, 0.2)
            for parameters in [first, first.map { $0 * -0.7 + 0.01 }] {
                let expected = reference(parameters)
                XCTAssertTrue(expected.contains { $0 > 0 }, "\(label): some outputs pass ReLU")
                assertClose(
                    inference.forward(input: input, parameters: parameters), expected, absoluteTolerance: 1e-5,
                    "\(label) Winograd inference vs separate layers")
                assertClose(
                    training.forward(input: input, parameters: parameters), expected, absoluteTolerance: 1e-5,
                    "\(label) Winograd training vs separate layers")
            }
        }
    }

    func testNetworkFusesConvolutionReluPool() throws {
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 1)
        let kinds = network.laneLayers.map { "\(type(of: $0))" }
        XCTAssertEqual(kinds, ["Convolution", "Convolution", "Flatten", "Dropout", "Dense"])
        let convolutions = network.laneLayers.compactMap { $0 as? Convolution }
        XCTAssertEqual(convolutions.map(\.isDirect), [true, false])
        XCTAssertEqual(convolutions.map(\.outputChannelsLast), [true, false])
        XCTAssertEqual(convolutions.map(\.inputChannelsLast), [false, true])
    }

    /// Several lanes (one per thread) give the single lane's gradient and probabilities up to
    /// summation order.
    func testLanesMatchOneLane() throws {
        let saved = ComputeThreads.kernelThreadCount
        defer { ComputeThreads.kernelThreadCount = saved }
        var generator = TestGenerator(seed: 46)
        let count = 37
        let images = generator.uniformArray(count * 784, 0, 1)
        let labels = (0..<count).map { _ in UInt8(generator.next() % 10) }
        let network = try Network(architecture: ModelPreset.fast.architecture, seed: 3)
        network.chunkSize = 5
        network.minimumLaneSamples = 4

        ComputeThreads.kernelThreadCount = 1
        network.zeroGradients()
        let one = network.accumulateGradients(images: images, labels: labels, dropoutSeed: 7)
        let oneGradient = network.gradients
        let oneProbabilities = network.probabilities(images: images)

        for threads in [2, 3] {
            ComputeThreads.kernelThreadCount = threads
            network.zeroGradients()
            let several = network.accumulateGradients(images: images, labels: labels, dropoutSeed: 7)
            XCTAssertEqual(several.count, count)
            XCTAssertEqual(several.correct, one.correct)
            XCTAssertEqual(several.lossSum, one.lossSum, accuracy: 1e-3)
            assertClose(network.gradients, oneGradient, absoluteTolerance: 1e-4, "gradient, \(threads) lanes vs 1")
            assertClose(
                network.probabilities(images: images), oneProbabilities, absoluteTolerance: 1e-5,
                "probabilities, \(threads) lanes vs 1")
        }
    }
}
