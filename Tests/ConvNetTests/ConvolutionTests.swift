// The fast convolution (im2col + sgemm, several threads) equals the nested-loop reference.
import XCTest
import TestSupport
@testable import ConvNet

final class ConvolutionTests: XCTestCase {
    func testFastConvolutionMatchesReference() throws {
        // (batch, channels, height, width, outputs, kernel)
        let shapes = [
            (1, 1, 28, 28, 32, 3), (5, 3, 13, 11, 8, 3), (3, 4, 7, 9, 5, 5), (2, 2, 4, 4, 3, 1), (4, 6, 6, 6, 7, 3),
        ]
        var generator = TestGenerator(seed: 21)
        for padding in [Padding.valid, .same] {
            for (batch, channels, height, width, outputs, kernel) in shapes {
                let layer = try Convolution(
                    name: "conv", input: .image(channels, height, width), outputChannels: outputs,
                    kernelSize: kernel, padding: padding, feedsRelu: true)
                let input = generator.uniformArray(batch * channels * height * width)
                let weight = generator.uniformArray(outputs * channels * kernel * kernel, -0.3, 0.3)
                let bias = generator.uniformArray(outputs)
                let fast = LayerHarness(layer: layer, batch: batch).forward(input: input, parameters: weight + bias)
                let reference = ReferenceConvolution.forward(
                    input: input, weight: weight, bias: bias, batch: batch, channels: channels, height: height,
                    width: width, outputChannels: outputs, kernelSize: kernel, padding: padding)
                assertClose(
                    fast, reference, absoluteTolerance: 1e-5,
                    "conv \(padding) N\(batch) C\(channels) \(height)x\(width) O\(outputs) K\(kernel)")
            }
        }
    }

    func testThreadCountDoesNotChangeResults() throws {
        var generator = TestGenerator(seed: 22)
        let layer = try Convolution(
            name: "conv", input: .image(3, 10, 10), outputChannels: 4, kernelSize: 3, padding: .same, feedsRelu: true)
        let input = generator.uniformArray(6 * 300)
        let parameters = generator.uniformArray(4 * 27 + 4)
        let saved = ComputeThreads.kernelThreadCount
        defer { ComputeThreads.kernelThreadCount = saved }
        ComputeThreads.kernelThreadCount = 1
        let one = LayerHarness(layer: layer, batch: 6).forward(input: input, parameters: parameters)
        ComputeThreads.kernelThreadCount = 2
        let two = LayerHarness(layer: layer, batch: 6).forward(input: input, parameters: parameters)
        XCTAssertEqual(one, two)
    }
}
