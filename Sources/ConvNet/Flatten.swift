// Flatten: channel-major activations `[C, N, H, W]` to row-major `[N, C*H*W]` with each row in
// PyTorch's NCHW flatten order (c, then y, then x), so dense weights match PyTorch's exactly.

/// The layout change from the convolution part of a network to its dense part.
final class Flatten: Layer {
    let name = ""
    let inputShape: SampleShape
    let outputShape: SampleShape

    init(input: SampleShape) {
        inputShape = input
        outputShape = .flat(input.count)
    }

    /// x `[C, N, H*W]` -> y `[N, C*H*W]`.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let channels = inputShape.channels, plane = inputShape.height * inputShape.width
        parallelChunks(batch, threads: context.threads) { samples in
            for n in samples {
                for c in 0..<channels {
                    (output + (n * channels + c) * plane).update(from: input + (c * batch + n) * plane, count: plane)
                }
            }
        }
    }

    /// dy `[N, C*H*W]` -> dx `[C, N, H*W]`.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        let channels = inputShape.channels, plane = inputShape.height * inputShape.width
        parallelChunks(batch, threads: context.threads) { samples in
            for n in samples {
                for c in 0..<channels {
                    (inputGradient + (c * batch + n) * plane).update(
                        from: outputGradient + (n * channels + c) * plane, count: plane)
                }
            }
        }
    }
}
