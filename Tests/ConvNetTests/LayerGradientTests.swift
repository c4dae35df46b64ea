// Finite-difference checks of every layer's input and parameter gradients (reference in Double),
// and of softmax cross-entropy.
import XCTest
import TestSupport
@testable import ConvNet

final class LayerGradientTests: XCTestCase {
    /// Checks input and parameter gradients of `layer` on `input` against central differences.
    private func checkLayer(
        _ layer: Layer, batch: Int, input: [Float], step: Float = 1e-2, tolerance: Double = 1e-3,
        seed: UInt64 = 1, _ label: String
    ) {
        var generator = TestGenerator(seed: seed)
        var parameters = [Float](repeating: 0, count: layer.parameterCount)
        var initGenerator = SplitMix64(seed: seed)
        parameters.withUnsafeMutableBufferPointer { p in
            if let base = p.baseAddress { layer.initialize(parameters: base, generator: &initGenerator) }
        }
        // Non-zero biases so they are exercised.
        for index in parameters.indices where parameters[index] == 0 {
            parameters[index] = generator.uniform(-0.5, 0.5)
        }
        let weights = generator.uniformArray(batch * layer.outputShape.count)
        let harness = LayerHarness(layer: layer, batch: batch)
        let (inputGradient, parameterGradient) = harness.gradients(
            input: input, parameters: parameters, weights: weights)
        FiniteDifference.check(
            analytic: inputGradient, of: { harness.loss(input: $0, parameters: parameters, weights: weights) },
            at: input, step: step, tolerance: tolerance, "\(label) input gradient")
        if !parameters.isEmpty {
            FiniteDifference.check(
                analytic: parameterGradient, of: { harness.loss(input: input, parameters: $0, weights: weights) },
                at: parameters, step: step, tolerance: tolerance, "\(label) parameter gradient")
            // Backward adds: starting from a non-zero gradient gives that plus the same gradient.
            let start = generator.uniformArray(parameters.count)
            let (_, added) = harness.gradients(
                input: input, parameters: parameters, weights: weights, initialGradient: start)
            assertClose(
                added, zip(start, parameterGradient).map { $0 + $1 }, absoluteTolerance: 1e-5, "\(label) backward adds")
        }
    }

    func testConvolutionValidGradients() throws {
        var generator = TestGenerator(seed: 11)
        let layer = try Convolution(
            name: "conv1", input: .image(2, 6, 5), outputChannels: 3, kernelSize: 3, padding: .valid, feedsRelu: true)
        checkLayer(layer, batch: 2, input: generator.uniformArray(2 * 2 * 6 * 5), "conv valid")
    }

    func testConvolutionSameGradients() throws {
        var generator = TestGenerator(seed: 12)
        let layer = try Convolution(
            name: "conv1", input: .image(3, 5, 6), outputChannels: 2, kernelSize: 3, padding: .same, feedsRelu: false)
        checkLayer(layer, batch: 3, input: generator.uniformArray(3 * 3 * 5 * 6), "conv same")
        let wide = try Convolution(
            name: "conv2", input: .image(1, 7, 7), outputChannels: 2, kernelSize: 5, padding: .same, feedsRelu: false)
        checkLayer(wide, batch: 2, input: generator.uniformArray(2 * 49), "conv same 5x5")
    }

    func testMaxPoolGradients() throws {
        // Distinct values 0.05 apart so no window has a near-tie that a step of 1e-3 could flip.
        var generator = TestGenerator(seed: 13)
        let count = 2 * 3 * 5 * 7
        var values = (0..<count).map { Float($0) * 0.05 - 5 }
        values.shuffle(using: &generator)
        checkLayer(try MaxPool(input: .image(2, 5, 7)), batch: 3, input: values, step: 1e-3, "max pool (odd size)")
    }

    func testReLUGradients() {
        // Values at least 0.05 away from the kink at 0.
        var generator = TestGenerator(seed: 14)
        let input = (0..<60).map { _ -> Float in
            let value = generator.uniform(0.05, 1)
            return generator.next() % 2 == 0 ? value : -value
        }
        checkLayer(ReLU(input: .image(3, 2, 5)), batch: 2, input: input, step: 1e-2, "relu")
    }

    func testFlattenGradientsAndOrder() {
        var generator = TestGenerator(seed: 15)
        let layer = Flatten(input: .image(2, 2, 3))
        let input = generator.uniformArray(3 * 12)
        checkLayer(layer, batch: 3, input: input, "flatten")
        // PyTorch order: sample n's row is (c, y, x) from the channel-major input [C, N, H, W].
        let output = LayerHarness(layer: layer, batch: 3).forward(input: input, parameters: [])
        for n in 0..<3 {
            for c in 0..<2 {
                for s in 0..<6 { XCTAssertEqual(output[n * 12 + c * 6 + s], input[(c * 3 + n) * 6 + s]) }
            }
        }
    }

    func testDenseGradients() throws {
        var generator = TestGenerator(seed: 16)
        let layer = try Dense(name: "dense1", input: .flat(7), outputs: 4, feedsRelu: false)
        checkLayer(layer, batch: 5, input: generator.uniformArray(35), "dense")
    }

    func testDropoutGradientsAndMask() throws {
        var generator = TestGenerator(seed: 17)
        let flat = try Dropout(input: .flat(40), rate: 0.5, layerIndex: 3)
        checkLayer(flat, batch: 4, input: generator.uniformArray(160), "dropout flat")
        let image = try Dropout(input: .image(2, 3, 3), rate: 0.25, layerIndex: 1)
        checkLayer(image, batch: 3, input: generator.uniformArray(54), "dropout image")
        // Kept values are scaled by 1/(1-rate); roughly rate of them are dropped.
        let ones = [Float](repeating: 1, count: 160)
        let output = LayerHarness(layer: flat, batch: 4).forward(input: ones, parameters: [])
        XCTAssertTrue(output.allSatisfy { $0 == 0 || $0 == 2 })
        let dropped = output.filter { $0 == 0 }.count
        XCTAssertTrue((50...110).contains(dropped), "dropped \(dropped) of 160 at rate 0.5")
        // Inference: identity.
        var harness = LayerHarness(layer: flat, batch: 4)
        harness.context.isTraining = false
        XCTAssertEqual(harness.forward(input: ones, parameters: []), ones)
    }

    func testDropoutMaskDependsOnSampleIndexNotChunk() throws {
        // The mask of sample n is the same whether it is computed in one batch or alone with
        // firstSample = n: what lets workers and internal chunking agree.
        var generator = TestGenerator(seed: 18)
        let layer = try Dropout(input: .image(2, 3, 3), rate: 0.5, layerIndex: 2)
        let input = generator.uniformArray(4 * 18)
        let whole = LayerHarness(layer: layer, batch: 4).forward(input: input, parameters: [])
        for n in 0..<4 {
            var single = LayerHarness(layer: layer, batch: 1)
            single.context.firstSample = n
            var sample = [Float](), expected = [Float]()
            for c in 0..<2 {
                let start: Int = (c * 4 + n) * 9
                sample += input[start..<(start + 9)]
                expected += whole[start..<(start + 9)]
            }
            let output = single.forward(input: sample, parameters: [])
            XCTAssertEqual(output, expected, "sample \(n)")
        }
    }

    func testSoftmaxCrossEntropyGradient() {
        var generator = TestGenerator(seed: 19)
        let batch = 4, classes = 5
        let logits = generator.uniformArray(batch * classes, -3, 3)
        let labels: [UInt8] = [0, 4, 2, 2]
        func evaluate(_ logits: [Float]) -> (Double, Int, [Float]) {
            var gradient = [Float](repeating: 0, count: logits.count)
            let result = logits.withUnsafeBufferPointer { l in
                labels.withUnsafeBufferPointer { y in
                    gradient.withUnsafeMutableBufferPointer { g in
                        SoftmaxCrossEntropy.lossAndGradient(
                            logits: l.baseAddress!, labels: y.baseAddress!, logitGradient: g.baseAddress!, batch: batch,
                            classes: classes)
                    }
                }
            }
            return (result.lossSum, result.correct, gradient)
        }
        let (loss, _, gradient) = evaluate(logits)
        // Reference loss in Double.
        var reference = 0.0
        for n in 0..<batch {
            let row = (0..<classes).map { Double(logits[n * classes + $0]) }
            reference += log(row.map { exp($0) }.reduce(0, +)) - row[Int(labels[n])]
        }
        XCTAssertEqual(loss, reference, accuracy: 1e-5)
        FiniteDifference.check(
            analytic: gradient, of: { evaluate($0).0 }, at: logits, step: 1e-2, tolerance: 1e-3, "softmax cross-entropy"
        )
    }
}
