// 2-D convolution, stride 1, "valid" or "same" zero padding: im2col + one OpenBLAS sgemm over the
// whole batch, and beside it `ReferenceConvolution`, a nested-loop version used only by tests.
// Leaves out strides, dilation and groups: the presets do not need them.
//
// Shape letters: N batch, C input channels, O output channels, H W input height and width,
// R S output height and width, P = R * S, K kernel size, Q = C * K * K (one im2col row per q).

/// Convolution layer. Weights `[O, C, K, K]` (PyTorch OIHW), bias `[O]`.
final class Convolution: Layer {
    let name: String
    let inputShape: SampleShape
    let outputShape: SampleShape
    let kernelSize: Int
    let pad: Int
    /// Followed by ReLU: He initialisation instead of Glorot.
    let feedsRelu: Bool
    /// Columns of the last forward batch: `[Q, N, R, S]`.
    private let columns = Scratch()
    /// Gradient of the columns during backward: `[Q, N, R, S]`.
    private let columnGradient = Scratch()
    /// Partial weight gradients of the extra threads: `[threads - 1, O, Q]`.
    private let partialWeightGradient = Scratch()

    init(name: String, input: SampleShape, outputChannels: Int, kernelSize: Int, padding: Padding, feedsRelu: Bool)
        throws
    {
        guard !input.isFlat else {
            throw ArchitectureError("\(name): convolution needs an image input, got a flat one")
        }
        guard kernelSize >= 1, kernelSize % 2 == 1 else {
            throw ArchitectureError("\(name): kernel size must be odd, got \(kernelSize)")
        }
        guard outputChannels >= 1 else { throw ArchitectureError("\(name): needs at least one output channel") }
        let pad = padding == .same ? kernelSize / 2 : 0
        let height = input.height + 2 * pad - kernelSize + 1
        let width = input.width + 2 * pad - kernelSize + 1
        guard height >= 1, width >= 1 else {
            throw ArchitectureError(
                "\(name): a \(kernelSize)x\(kernelSize) kernel does not fit a \(input.height)x\(input.width) input")
        }
        self.name = name
        self.inputShape = input
        self.outputShape = .image(outputChannels, height, width)
        self.kernelSize = kernelSize
        self.pad = pad
        self.feedsRelu = feedsRelu
    }

    var parameterTable: [(name: String, shape: [Int])] {
        [
            ("\(name).weight", [outputShape.channels, inputShape.channels, kernelSize, kernelSize]),
            ("\(name).bias", [outputShape.channels]),
        ]
    }

    func initialize(parameters: UnsafeMutablePointer<Float>, generator: inout SplitMix64) {
        let fanIn = inputShape.channels * kernelSize * kernelSize
        let fanOut = outputShape.channels * kernelSize * kernelSize
        let limit = feedsRelu ? (6 / Float(fanIn)).squareRoot() : (6 / Float(fanIn + fanOut)).squareRoot()
        fillUniform(parameters, count: outputShape.channels * fanIn, limit: limit, generator: &generator)
        (parameters + outputShape.channels * fanIn).initialize(repeating: 0, count: outputShape.channels)
    }

    /// x `[C, N, H, W]` -> y `[O, N, R, S]`.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let o = outputShape.channels, q = inputShape.channels * kernelSize * kernelSize
        let np = batch * outputShape.height * outputShape.width
        let columns = self.columns.reserve(q * np)  // [Q, N, R, S]
        im2col(input: input, columns: columns, batch: batch)
        let weight = parameters  // [O, Q]
        let bias = parameters + o * q  // [O]
        // y[O, NP] = b[O] (broadcast), then y += W[O, Q] * columns[Q, NP]: with beta = 1 OpenBLAS
        // does not make its own pass to clear y.
        parallelChunks(o) { channels in
            for channel in channels { (output + channel * np).initialize(repeating: bias[channel], count: np) }
        }
        BLAS.parallelSgemm(m: o, n: np, k: q, a: weight, b: columns, beta: 1, c: output)
    }

    /// Adds dW, db; overwrites dx `[C, N, H, W]` if asked.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let o = outputShape.channels, q = inputShape.channels * kernelSize * kernelSize
        let np = batch * outputShape.height * outputShape.width
        let columns = self.columns.pointer  // [Q, NP], from forward
        let weightGradient = parameterGradient  // [O, Q]
        let biasGradient = parameterGradient + o * q  // [O]
        // dW[O, Q] += dy[O, NP] * columns[Q, NP]^T
        BLAS.parallelSgemmSplitK(
            m: o, n: q, k: np, a: outputGradient, b: columns, c: weightGradient, scratch: partialWeightGradient)
        parallelChunks(o) { channels in
            for channel in channels {
                biasGradient[channel] += vectorSum(outputGradient + channel * np, count: np)
            }
        }
        guard let inputGradient else { return }
        let columnGradient = self.columnGradient.reserve(q * np)  // [Q, NP]
        // dcolumns[Q, NP] = W[O, Q]^T * dy[O, NP]
        BLAS.parallelSgemm(transposeA: true, m: q, n: np, k: o, a: parameters, b: outputGradient, c: columnGradient)
        col2im(columns: columnGradient, inputGradient: inputGradient, batch: batch)
    }

    /// columns[(c, ky, kx), n, r, s] = x[c, n, r + ky - pad, s + kx - pad], zero outside.
    func im2col(input: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>, batch: Int) {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = outputShape.height, cols = outputShape.width, k = kernelSize, pad = self.pad
        let plane = rows * cols, np = batch * plane
        parallelChunks(batch) { samples in
            for c in 0..<channels {
                for ky in 0..<k {
                    for kx in 0..<k {
                        let q = (c * k + ky) * k + kx
                        // Output columns s whose input column s + kx - pad lies inside [0, W).
                        let sLow = max(0, pad - kx), sHigh = min(cols, width + pad - kx)
                        for n in samples {
                            let source = input + (c * batch + n) * height * width
                            let target = columns + q * np + n * plane
                            for r in 0..<rows {
                                let y = r + ky - pad
                                let line = target + r * cols
                                if y < 0 || y >= height || sLow >= sHigh {
                                    line.initialize(repeating: 0, count: cols)
                                    continue
                                }
                                if sLow > 0 { line.initialize(repeating: 0, count: sLow) }
                                let from = source + y * width + (kx - pad)
                                for s in sLow..<sHigh { line[s] = from[s] }
                                if sHigh < cols { (line + sHigh).initialize(repeating: 0, count: cols - sHigh) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx[c, n, y, x] = sum of dcolumns[(c, ky, kx), n, r, s] over all (ky, kx, r, s) that read it.
    func col2im(columns: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>, batch: Int) {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = outputShape.height, cols = outputShape.width, k = kernelSize, pad = self.pad
        let plane = rows * cols, np = batch * plane
        parallelChunks(batch) { samples in
            for c in 0..<channels {
                for n in samples {
                    (inputGradient + (c * batch + n) * height * width).initialize(repeating: 0, count: height * width)
                }
                for ky in 0..<k {
                    for kx in 0..<k {
                        let q = (c * k + ky) * k + kx
                        let sLow = max(0, pad - kx), sHigh = min(cols, width + pad - kx)
                        if sLow >= sHigh { continue }
                        for n in samples {
                            let target = inputGradient + (c * batch + n) * height * width
                            let source = columns + q * np + n * plane
                            for r in 0..<rows {
                                let y = r + ky - pad
                                if y < 0 || y >= height { continue }
                                let line = source + r * cols
                                let into = target + y * width + (kx - pad)
                                for s in sLow..<sHigh { into[s] += line[s] }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The plainly correct convolution: seven nested loops, no tricks, same layouts as `Convolution`
/// (x `[C, N, H, W]`, W `[O, C, K, K]`, y `[O, N, R, S]`). For tests only; slow.
enum ReferenceConvolution {
    static func forward(
        input: [Float], weight: [Float], bias: [Float], batch: Int, channels: Int, height: Int, width: Int,
        outputChannels: Int, kernelSize k: Int, padding: Padding
    ) -> [Float] {
        let pad = padding == .same ? k / 2 : 0
        let rows = height + 2 * pad - k + 1, cols = width + 2 * pad - k + 1
        var output = [Float](repeating: 0, count: outputChannels * batch * rows * cols)
        for o in 0..<outputChannels {
            for n in 0..<batch {
                for r in 0..<rows {
                    for s in 0..<cols {
                        var sum = Double(bias[o])
                        for c in 0..<channels {
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let y = r + ky - pad, x = s + kx - pad
                                    guard y >= 0, y < height, x >= 0, x < width else { continue }
                                    sum +=
                                        Double(weight[((o * channels + c) * k + ky) * k + kx])
                                        * Double(input[((c * batch + n) * height + y) * width + x])
                                }
                            }
                        }
                        output[((o * batch + n) * rows + r) * cols + s] = Float(sum)
                    }
                }
            }
        }
        return output
    }
}

/// Sum of `count` Floats with eight independent SIMD lanes (so it vectorises); the order of
/// additions is fixed by `count`, so results are reproducible.
@inline(__always)
func vectorSum(_ pointer: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = SIMD8<Float>()
    var index = 0
    pointer.withMemoryRebound(to: Float.self, capacity: count) { values in
        while index + 8 <= count {
            lanes += SIMD8<Float>(
                values[index], values[index + 1], values[index + 2], values[index + 3],
                values[index + 4], values[index + 5], values[index + 6], values[index + 7])
            index += 8
        }
    }
    var sum = lanes.sum()
    while index < count {
        sum += pointer[index]
        index += 1
    }
    return sum
}
