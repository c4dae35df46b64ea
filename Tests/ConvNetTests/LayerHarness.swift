// Test-only hooks: run one layer forward and backward on plain arrays, and the scalar loss
// L = sum(y * r) (in Double) whose gradient with respect to y is r.
@testable import ConvNet

struct LayerHarness {
    let layer: Layer
    let batch: Int
    var context = LayerContext(isTraining: true, dropoutSeed: 42, firstSample: 0)

    func forward(input: [Float], parameters: [Float]) -> [Float] {
        var output = [Float](repeating: 0, count: batch * layer.outputShape.count)
        let parameters = parameters.isEmpty ? [0] : parameters
        input.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { y in
                    layer.forward(
                        input: x.baseAddress.unsafelyUnwrappedForKernels,
                        output: y.baseAddress.unsafelyUnwrappedForKernels, batch: batch,
                        parameters: p.baseAddress.unsafelyUnwrappedForKernels,
                        context: context)
                }
            }
        }
        return output
    }

    /// sum(y * weights), accumulated in Double.
    func loss(input: [Float], parameters: [Float], weights: [Float]) -> Double {
        let output = forward(input: input, parameters: parameters)
        var sum = 0.0
        for index in output.indices { sum += Double(output[index]) * Double(weights[index]) }
        return sum
    }

    /// Analytic (input gradient, parameter gradient) of `loss`; the parameter gradient starts at
    /// `initialGradient` to show that backward adds.
    func gradients(input: [Float], parameters: [Float], weights: [Float], initialGradient: [Float]? = nil) -> (
        [Float], [Float]
    ) {
        let output = forward(input: input, parameters: parameters)
        var inputGradient = [Float](repeating: .nan, count: input.count)
        var parameterGradient = initialGradient ?? [Float](repeating: 0, count: max(1, parameters.count))
        let parameters = parameters.isEmpty ? [0] : parameters
        input.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                output.withUnsafeBufferPointer { y in
                    weights.withUnsafeBufferPointer { dy in
                        inputGradient.withUnsafeMutableBufferPointer { dx in
                            parameterGradient.withUnsafeMutableBufferPointer { dp in
                                layer.backward(
                                    outputGradient: dy.baseAddress.unsafelyUnwrappedForKernels,
                                    input: x.baseAddress.unsafelyUnwrappedForKernels,
                                    output: y.baseAddress.unsafelyUnwrappedForKernels,
                                    inputGradient: dx.baseAddress.unsafelyUnwrappedForKernels,
                                    parameterGradient: dp.baseAddress.unsafelyUnwrappedForKernels,
                                    batch: batch, parameters: p.baseAddress.unsafelyUnwrappedForKernels,
                                    context: context)
                            }
                        }
                    }
                }
            }
        }
        return (inputGradient, parameterGradient)
    }
}
