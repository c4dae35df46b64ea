// Fully connected layer on flat activations, through sgemm. Weights `[out, in]` as in PyTorch.
//
// Shape letters: N batch, I inputs, O outputs.

/// y = x W^T + b.
final class Dense: Layer {
    let name: String
    let inputShape: SampleShape
    let outputShape: SampleShape
    /// Followed by ReLU: He initialisation instead of Glorot.
    let feedsRelu: Bool

    init(name: String, input: SampleShape, outputs: Int, feedsRelu: Bool) throws {
        guard input.isFlat else { throw ArchitectureError("\(name): dense needs a flat input; add flatten before it") }
        guard outputs >= 1 else { throw ArchitectureError("\(name): needs at least one output") }
        self.name = name
        self.inputShape = input
        self.outputShape = .flat(outputs)
        self.feedsRelu = feedsRelu
    }

    var parameterTable: [(name: String, shape: [Int])] {
        [("\(name).weight", [outputShape.count, inputShape.count]), ("\(name).bias", [outputShape.count])]
    }

    func initialize(parameters: UnsafeMutablePointer<Float>, generator: inout SplitMix64) {
        let inputs = inputShape.count, outputs = outputShape.count
        let limit = feedsRelu ? (6 / Float(inputs)).squareRoot() : (6 / Float(inputs + outputs)).squareRoot()
        fillUniform(parameters, count: outputs * inputs, limit: limit, generator: &generator)
        (parameters + outputs * inputs).initialize(repeating: 0, count: outputs)
    }

    /// x `[N, I]` -> y `[N, O]`.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let inputs = inputShape.count, outputs = outputShape.count
        let bias = parameters + outputs * inputs
        for n in 0..<batch { (output + n * outputs).update(from: bias, count: outputs) }
        // y[N, O] += x[N, I] * W[O, I]^T
        BLAS.sgemm(transposeB: true, m: batch, n: outputs, k: inputs, a: input, b: parameters, beta: 1, c: output)
    }

    /// dW[O, I] += dy^T x; db[O] += column sums of dy; dx[N, I] = dy W.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let inputs = inputShape.count, outputs = outputShape.count
        BLAS.sgemm(
            transposeA: true, m: outputs, n: inputs, k: batch, a: outputGradient, b: input, beta: 1,
            c: parameterGradient)
        let biasGradient = parameterGradient + outputs * inputs
        for n in 0..<batch {
            let row = outputGradient + n * outputs
            for o in 0..<outputs { biasGradient[o] += row[o] }
        }
        guard let inputGradient else { return }
        BLAS.sgemm(m: batch, n: inputs, k: outputs, a: outputGradient, b: parameters, c: inputGradient)
    }
}
