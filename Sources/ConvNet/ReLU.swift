// Rectified linear unit, element-wise and layout-agnostic. Leaves out leaky variants.

/// y = max(0, x); dx = dy where y > 0, else 0.
final class ReLU: Layer {
    let name = ""
    let inputShape: SampleShape
    var outputShape: SampleShape { inputShape }

    init(input: SampleShape) { inputShape = input }

    /// x, y: `batch * inputShape.count` values, any layout.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        parallelChunks(batch * inputShape.count, threads: context.threads, minimumChunk: 4096) { range in
            for index in range { output[index] = max(0, input[index]) }
        }
    }

    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        parallelChunks(batch * inputShape.count, threads: context.threads, minimumChunk: 4096) { range in
            for index in range { inputGradient[index] = output[index] > 0 ? outputGradient[index] : 0 }
        }
    }
}
