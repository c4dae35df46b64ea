// 2x2 max pooling with stride 2 on channel-major activations. Odd trailing rows or columns are
// dropped (floor), as in PyTorch's default and Keras' "valid" pooling. No other window sizes.
//
// Shape letters: N batch, C channels, H W input height and width, R S output (H/2, W/2).

/// Max pooling layer; remembers which of the four inputs won for backward.
final class MaxPool: Layer {
    let name = ""
    let inputShape: SampleShape
    let outputShape: SampleShape
    /// Index (0...3) of the winner in each window of the last forward batch: `[C, N, R, S]`.
    private var winners = [UInt8]()

    init(input: SampleShape) throws {
        guard !input.isFlat else { throw ArchitectureError("max pooling needs an image input, got a flat one") }
        guard input.height >= 2, input.width >= 2 else {
            throw ArchitectureError("max pooling needs at least 2x2 input, got \(input.height)x\(input.width)")
        }
        inputShape = input
        outputShape = .image(input.channels, input.height / 2, input.width / 2)
    }

    /// x `[C, N, H, W]` -> y `[C, N, R, S]`. Ties go to the first of (top-left, top-right,
    /// bottom-left, bottom-right).
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let planes = inputShape.channels * batch
        let height = inputShape.height, width = inputShape.width
        let rows = outputShape.height, cols = outputShape.width
        if winners.count < planes * rows * cols { winners = [UInt8](repeating: 0, count: planes * rows * cols) }
        winners.withUnsafeMutableBufferPointer { winnersBuffer in
            let winners = winnersBuffer.baseAddress.unsafelyUnwrappedForKernels
            parallelChunks(planes, threads: context.threads) { range in
                for plane in range {
                    let x = input + plane * height * width
                    let y = output + plane * rows * cols
                    let w = winners + plane * rows * cols
                    for r in 0..<rows {
                        let top = x + 2 * r * width, bottom = top + width
                        for s in 0..<cols {
                            var best = top[2 * s], index: UInt8 = 0
                            if top[2 * s + 1] > best { best = top[2 * s + 1]; index = 1 }
                            if bottom[2 * s] > best { best = bottom[2 * s]; index = 2 }
                            if bottom[2 * s + 1] > best { best = bottom[2 * s + 1]; index = 3 }
                            y[r * cols + s] = best
                            w[r * cols + s] = index
                        }
                    }
                }
            }
        }
    }

    /// Routes each output gradient to the input that won; every other dx is 0.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        let planes = inputShape.channels * batch
        let height = inputShape.height, width = inputShape.width
        let rows = outputShape.height, cols = outputShape.width
        winners.withUnsafeBufferPointer { winnersBuffer in
            let winners = winnersBuffer.baseAddress.unsafelyUnwrappedForKernels
            parallelChunks(planes, threads: context.threads) { range in
                for plane in range {
                    let dx = inputGradient + plane * height * width
                    dx.initialize(repeating: 0, count: height * width)
                    let dy = outputGradient + plane * rows * cols
                    let w = winners + plane * rows * cols
                    for r in 0..<rows {
                        for s in 0..<cols {
                            let index = Int(w[r * cols + s])
                            dx[(2 * r + index / 2) * width + 2 * s + index % 2] = dy[r * cols + s]
                        }
                    }
                }
            }
        }
    }
}

extension Optional {
    /// The wrapped pointer of a non-empty buffer. Buffers reaching the kernels are never empty
    /// (the network refuses empty batches), so this is `unsafelyUnwrapped` with that contract.
    @inline(__always)
    var unsafelyUnwrappedForKernels: Wrapped { unsafelyUnwrapped }
}
