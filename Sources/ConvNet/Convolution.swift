// 2-D convolution, stride 1, "valid" or "same" zero padding: im2col + one OpenBLAS sgemm over the
// whole batch, and beside it `ReferenceConvolution`, a nested-loop version used only by tests.
// Leaves out strides, dilation and groups: the presets do not need them.
//
// Shape letters: N batch, C input channels, O output channels, H W input height and width,
// R S output height and width, P = R * S, K kernel size, Q = C * K * K (one im2col row per q).

/// Convolution layer. Weights `[O, C, K, K]` (PyTorch OIHW), bias `[O]`.
///
/// With `pooled`, the layer is conv -> ReLU -> 2x2 max pooling in one: the convolution is
/// computed only at the positions the pooling reads (odd trailing rows and columns are dropped
/// before the product, not after), the bias is added after the max (max(x) + b = max(x + b),
/// rounding is monotonic) and ReLU with it, so the pre-pooling activation is written once and read
/// once.
final class Convolution: Layer {
    let name: String
    let inputShape: SampleShape
    let outputShape: SampleShape
    let kernelSize: Int
    let pad: Int
    /// Followed by ReLU: He initialisation instead of Glorot.
    let feedsRelu: Bool
    /// Fused ReLU and 2x2 max pooling after the convolution.
    let pooled: Bool
    /// Rows and columns of the convolution's own output (before pooling): `R`, `S`.
    let rows: Int, cols: Int
    /// Columns of the last forward batch: `[Q, N, R, S]`.
    private let columns = Scratch()
    /// Gradient of the columns during backward: `[Q, N, R, S]`.
    private let columnGradient = Scratch()
    /// Partial weight gradients of the extra threads: `[threads - 1, O, Q]`.
    private let partialWeightGradient = Scratch()
    /// Pooled only: the convolution before pooling `[O, N, R, S]`, in backward its gradient.
    private let convolved = Scratch()
    /// Pooled only: the max of each pair of rows `[O, N, R/2, S]`.
    private let rowMax = Scratch()
    /// Computed by `DirectConvolution` instead of im2col and a matrix product.
    private(set) var isDirect = false
    /// Direct and Winograd only: the winner (0...3) of each pooling window in the last training
    /// forward, laid out like the output.
    private let winners = Scratch()
    /// The input is `[N, H, W, C]` (channels last) instead of `[C, N, H, W]`: the im2col rows are
    /// then runs of K * C values instead of runs of S. Set by the network when the layer before
    /// is a direct convolution, which writes that layout most cheaply.
    var inputChannelsLast = false
    /// Direct only: the output is `[N, R/2, S/2, O]` instead of `[O, N, R/2, S/2]`.
    var outputChannelsLast = false
    /// Channels last only: the weights as `[O, K, K, C]`, and their gradient.
    private let permutedWeight = Scratch(), permutedWeightGradient = Scratch()
    /// The forward pass by `WinogradConvolution` (training and inference): transformed weights,
    /// patches and products.
    private let winograd = WinogradScratch()

    init(
        name: String, input: SampleShape, outputChannels: Int, kernelSize: Int, padding: Padding, feedsRelu: Bool,
        pooled: Bool = false
    ) throws {
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
        if pooled, height < 2 || width < 2 {
            throw ArchitectureError("max pooling needs at least 2x2 input, got \(height)x\(width)")
        }
        self.name = name
        self.inputShape = input
        self.rows = pooled ? height / 2 * 2 : height
        self.cols = pooled ? width / 2 * 2 : width
        self.outputShape =
            pooled ? .image(outputChannels, height / 2, width / 2) : .image(outputChannels, height, width)
        self.kernelSize = kernelSize
        self.pad = pad
        self.feedsRelu = feedsRelu || pooled
        self.pooled = pooled
        self.isDirect = DirectConvolution.applies(to: self)
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

    /// x `[C, N, H, W]` -> y `[O, N, R, S]` (pooled: `[O, N, R/2, S/2]`).
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        if isDirect {
            forwardDirect(input: input, output: output, batch: batch, parameters: parameters, context: context)
            return
        }
        if WinogradConvolution.applies(to: self) {
            WinogradConvolution.forward(
                layer: self, input: input, output: output, batch: batch, parameters: parameters, scratch: winograd,
                winners: context.isTraining ? winners.reserve(batch * outputShape.count) : nil)
            return
        }
        let o = outputShape.channels, q = inputShape.channels * kernelSize * kernelSize
        let np = batch * rows * cols
        let columns = self.columns.reserve(q * np)  // [Q, N, R, S], channels last [N, R, S, Q]
        let bias = parameters + o * q  // [O]
        var beta: Float = 0
        let target = pooled ? self.convolved.reserve(o * np) : output  // [O, NP]
        if !pooled {
            // y[O, NP] = b[O] (broadcast), then y += the product: with beta = 1 OpenBLAS does not
            // make its own pass to clear y.
            parallelChunks(o, threads: context.threads) { channels in
                for channel in channels { (output + channel * np).initialize(repeating: bias[channel], count: np) }
            }
            beta = 1
        }
        if inputChannelsLast {
            im2colChannelsLast(input: input, columns: columns, batch: batch, threads: context.threads)
            let weight = permutedWeight.reserve(o * q)
            permuteWeight(parameters, into: weight)
            // y[O, NP] (+)= W[O, Q] * columns[NP, Q]^T
            BLAS.parallelSgemm(
                transposeB: true, m: o, n: np, k: q, a: weight, b: columns, beta: beta, c: target,
                threads: context.threads)
        } else {
            im2col(input: input, columns: columns, batch: batch, threads: context.threads)
            // y[O, NP] (+)= W[O, Q] * columns[Q, NP]
            BLAS.parallelSgemm(
                m: o, n: np, k: q, a: parameters, b: columns, beta: beta, c: target, threads: context.threads)
        }
        if pooled {
            poolBiasRelu(convolved: target, bias: bias, output: output, batch: batch, threads: context.threads)
        }
    }

    /// Adds dW, db; overwrites dx `[C, N, H, W]` if asked.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        if isDirect {
            DirectConvolution.backward(
                layer: self, outputGradient: outputGradient, input: input, output: output,
                winners: winners.pointer, inputGradient: inputGradient, parameterGradient: parameterGradient,
                batch: batch, parameters: parameters, threads: context.threads)
            return
        }
        let o = outputShape.channels, q = inputShape.channels * kernelSize * kernelSize
        let np = batch * rows * cols
        let weightGradient = parameterGradient  // [O, Q]
        let biasGradient = parameterGradient + o * q  // [O]
        var convolvedGradient = outputGradient  // [O, NP]
        if pooled {
            let keptWinners = WinogradConvolution.applies(to: self)
            if keptWinners {
                // The forward kept only the winners; backward needs the columns and permuted weights.
                im2colChannelsLast(
                    input: input, columns: columns.reserve(q * np), batch: batch, threads: context.threads)
                permuteWeight(parameters, into: permutedWeight.reserve(o * q))
            }
            let unpooled = keptWinners ? self.convolved.reserve(o * np) : self.convolved.pointer
            unpool(
                outputGradient: outputGradient, output: output, winners: keptWinners ? winners.pointer : nil,
                biasGradient: biasGradient, convolved: unpooled, batch: batch, threads: context.threads)
            convolvedGradient = UnsafePointer(unpooled)
        } else {
            parallelChunks(o, threads: context.threads) { channels in
                for channel in channels {
                    biasGradient[channel] += vectorSum(outputGradient + channel * np, count: np)
                }
            }
        }
        if inputChannelsLast {
            backwardChannelsLast(
                convolvedGradient: convolvedGradient, inputGradient: inputGradient, weightGradient: weightGradient,
                batch: batch, context: context)
            return
        }
        // dW[O, Q] += dy[O, NP] * columns[Q, NP]^T
        BLAS.parallelSgemmSplitK(
            m: o, n: q, k: np, a: convolvedGradient, b: columns.pointer, transposeB: true, c: weightGradient,
            scratch: partialWeightGradient, threads: context.threads)
        guard let inputGradient else { return }
        let columnGradient = self.columnGradient.reserve(q * np)  // [Q, NP]
        // dcolumns[Q, NP] = W[O, Q]^T * dy[O, NP]
        BLAS.parallelSgemm(
            transposeA: true, m: q, n: np, k: o, a: parameters, b: convolvedGradient, c: columnGradient,
            threads: context.threads)
        col2im(columns: columnGradient, inputGradient: inputGradient, batch: batch, threads: context.threads)
    }

    /// Backward of the matrix products when the input is channels last: dW, and dx `[N, H, W, C]`.
    private func backwardChannelsLast(
        convolvedGradient: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
        weightGradient: UnsafeMutablePointer<Float>, batch: Int, context: LayerContext
    ) {
        let o = outputShape.channels, q = inputShape.channels * kernelSize * kernelSize
        let np = batch * rows * cols
        let columns = self.columns.pointer  // [NP, Q]
        // dW'[O, Q] = dy[O, NP] * columns[NP, Q], in [O, K, K, C] order; added to dW in [O, C, K, K].
        let permutedGradient = permutedWeightGradient.reserve(o * q)
        permutedGradient.initialize(repeating: 0, count: o * q)
        BLAS.parallelSgemmSplitK(
            m: o, n: q, k: np, a: convolvedGradient, b: columns, transposeB: false, c: permutedGradient,
            scratch: partialWeightGradient, threads: context.threads)
        let channels = inputShape.channels, taps = kernelSize * kernelSize
        for output in 0..<o {
            for channel in 0..<channels {
                let row = weightGradient + (output * channels + channel) * taps
                let from = permutedGradient + output * q + channel
                for tap in 0..<taps { row[tap] += from[tap * channels] }
            }
        }
        guard let inputGradient else { return }
        let columnGradient = self.columnGradient.reserve(q * np)  // [NP, Q]
        // dcolumns[NP, Q] = dy[O, NP]^T * W'[O, Q]
        BLAS.parallelSgemm(
            transposeA: true, m: np, n: q, k: o, a: convolvedGradient, b: permutedWeight.pointer, c: columnGradient,
            threads: context.threads)
        col2imChannelsLast(
            columns: columnGradient, inputGradient: inputGradient, batch: batch, threads: context.threads)
    }

    /// W'[o, (ky, kx, c)] = W[o, (c, ky, kx)].
    private func permuteWeight(_ weight: UnsafePointer<Float>, into permuted: UnsafeMutablePointer<Float>) {
        let channels = inputShape.channels, taps = kernelSize * kernelSize, q = channels * taps
        for output in 0..<outputShape.channels {
            for channel in 0..<channels {
                let row = weight + (output * channels + channel) * taps
                let into = permuted + output * q + channel
                for tap in 0..<taps { into[tap * channels] = row[tap] }
            }
        }
    }

    /// columns[(n, r, s), (ky, kx, c)] = x[n, r + ky - pad, s + kx - pad, c], zero outside: runs
    /// of C values, or K * C where a whole kernel row lies inside the image.
    func im2colChannelsLast(input: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>, batch: Int, threads: Int)
    {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = self.rows, cols = self.cols, k = kernelSize, pad = self.pad
        let q = channels * k * k, run = k * channels
        parallelChunks(batch, threads: threads) { samples in
            for n in samples {
                let image = input + n * height * width * channels
                for r in 0..<rows {
                    for s in 0..<cols {
                        let target = columns + ((n * rows + r) * cols + s) * q
                        for ky in 0..<k {
                            let y = r + ky - pad, line = target + ky * run
                            let x = s - pad
                            if y < 0 || y >= height {
                                line.initialize(repeating: 0, count: run)
                            } else if x >= 0 && x + k <= width {
                                copyFloats(from: image + (y * width + x) * channels, to: line, count: run)
                            } else {
                                for kx in 0..<k {
                                    let from = x + kx
                                    if from < 0 || from >= width {
                                        (line + kx * channels).initialize(repeating: 0, count: channels)
                                    } else {
                                        copyFloats(
                                            from: image + (y * width + from) * channels, to: line + kx * channels,
                                            count: channels)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx[n, y, x, c] = sum of dcolumns[(n, r, s), (ky, kx, c)] over all (r, s, ky, kx) that read it.
    func col2imChannelsLast(
        columns: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>, batch: Int, threads: Int
    ) {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = self.rows, cols = self.cols, k = kernelSize, pad = self.pad
        let q = channels * k * k, run = k * channels
        parallelChunks(batch, threads: threads) { samples in
            for n in samples {
                let image = inputGradient + n * height * width * channels
                image.initialize(repeating: 0, count: height * width * channels)
                for r in 0..<rows {
                    for s in 0..<cols {
                        let source = columns + ((n * rows + r) * cols + s) * q
                        for ky in 0..<k {
                            let y = r + ky - pad, x = s - pad
                            if y < 0 || y >= height { continue }
                            let line = source + ky * run
                            if x >= 0 && x + k <= width {
                                addFloats(line, into: image + (y * width + x) * channels, count: run)
                                continue
                            }
                            for kx in 0..<k where x + kx >= 0 && x + kx < width {
                                addFloats(
                                    line + kx * channels, into: image + (y * width + x + kx) * channels,
                                    count: channels)
                            }
                        }
                    }
                }
            }
        }
    }

    private func forwardDirect(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        guard context.isTraining else {
            DirectConvolution.forward(
                layer: self, input: input, output: output, batch: batch, parameters: parameters, winners: nil,
                threads: context.threads)
            return
        }
        let count = batch * outputShape.count
        DirectConvolution.forward(
            layer: self, input: input, output: output, batch: batch, parameters: parameters,
            winners: winners.reserve(count), threads: context.threads)
    }

    /// y[o, n, r, s] = max(0, b[o] + max of the 2x2 window of x[o, n] at (2r, 2s)), in two
    /// vectorised passes: the max of each pair of rows into `rowMax`, then of each pair of
    /// neighbours. Keeps no winners: backward finds them again in the values it overwrites.
    private func poolBiasRelu(
        convolved: UnsafePointer<Float>, bias: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
        batch: Int, threads: Int
    ) {
        let channels = outputShape.channels, rows = self.rows, cols = self.cols
        let pooledRows = outputShape.height
        let halfPlane = pooledRows * cols, channelSize = batch * halfPlane
        let rowMax = self.rowMax.reserve(channels * channelSize)
        parallelChunks(channels, threads: threads) { channelRange in
            for channel in channelRange {
                for n in 0..<batch {
                    let x = convolved + (channel * batch + n) * rows * cols
                    let v = rowMax + channel * channelSize + n * halfPlane
                    for r in 0..<pooledRows {
                        elementwiseMax(x + 2 * r * cols, x + (2 * r + 1) * cols, into: v + r * cols, count: cols)
                    }
                }
                pairMaxBiasRelu(
                    rowMax + channel * channelSize, bias: bias[channel], into: output + channel * channelSize / 2,
                    pairs: channelSize / 2)
            }
        }
    }

    /// The gradient before pooling `[O, N, R, S]`, written into `convolved`: each pooled gradient
    /// that passed ReLU (y > 0) goes to its window's winner, every other value is 0. The winners
    /// (0...3) are those the forward kept `[O, N, R/2, S/2]`, or else found again in the pre-pooling
    /// values `convolved` holds: the first maximum of top-left, top-right, bottom-left,
    /// bottom-right. Adds the bias gradient on the way.
    private func unpool(
        outputGradient: UnsafePointer<Float>, output: UnsafePointer<Float>, winners: UnsafePointer<Float>?,
        biasGradient: UnsafeMutablePointer<Float>, convolved: UnsafeMutablePointer<Float>, batch: Int,
        threads: Int
    ) {
        let channels = outputShape.channels, width = cols
        let pooledRows = outputShape.height, pooledCols = outputShape.width
        let pooledPlane = pooledRows * pooledCols
        parallelChunks(channels, threads: threads) { channelRange in
            for channel in channelRange {
                var sum: Float = 0
                for n in 0..<batch {
                    let plane = channel * batch + n
                    let dy = outputGradient + plane * pooledPlane, y = output + plane * pooledPlane
                    let x = convolved + plane * rows * cols
                    for r in 0..<pooledRows {
                        let top = x + 2 * r * width, bottom = top + width
                        for s in 0..<pooledCols {
                            let index = r * pooledCols + s
                            let value = y[index] > 0 ? dy[index] : 0
                            sum += value
                            let winner: Float
                            if let winners {
                                winner = winners[plane * pooledPlane + index]
                            } else {
                                // Selects only, no branches; a later value must be greater to win.
                                let a = top[2 * s], b = top[2 * s + 1], c = bottom[2 * s], d = bottom[2 * s + 1]
                                let rightOnTop = b > a, rightBelow = d > c
                                let below = (rightBelow ? d : c) > (rightOnTop ? b : a)
                                winner = below ? (rightBelow ? 3 : 2) : (rightOnTop ? 1 : 0)
                            }
                            top[2 * s] = winner == 0 ? value : 0
                            top[2 * s + 1] = winner == 1 ? value : 0
                            bottom[2 * s] = winner == 2 ? value : 0
                            bottom[2 * s + 1] = winner == 3 ? value : 0
                        }
                    }
                }
                biasGradient[channel] += sum
            }
        }
    }

    /// columns[(c, ky, kx), n, r, s] = x[c, n, r + ky - pad, s + kx - pad], zero outside.
    func im2col(input: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>, batch: Int, threads: Int) {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = self.rows, cols = self.cols, k = kernelSize, pad = self.pad
        let plane = rows * cols, np = batch * plane
        parallelChunks(batch, threads: threads) { samples in
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
                                copyFloats(from: from + sLow, to: line + sLow, count: sHigh - sLow)
                                if sHigh < cols { (line + sHigh).initialize(repeating: 0, count: cols - sHigh) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx[c, n, y, x] = sum of dcolumns[(c, ky, kx), n, r, s] over all (ky, kx, r, s) that read it.
    func col2im(columns: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>, batch: Int, threads: Int) {
        let channels = inputShape.channels, height = inputShape.height, width = inputShape.width
        let rows = self.rows, cols = self.cols, k = kernelSize, pad = self.pad
        let plane = rows * cols, np = batch * plane
        parallelChunks(batch, threads: threads) { samples in
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
                                addFloats(line + sLow, into: into + sLow, count: sHigh - sLow)
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

/// z[i] = max(x[i], y[i]), eight at a time.
@inline(__always)
func elementwiseMax(
    _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>, count: Int
) {
    forEachEight(count) { index in
        var best = load8(x + index)
        let other = load8(y + index)
        best.replace(with: other, where: other .> best)
        store8(best, z + index)
    } remainder: { index in
        z[index] = max(x[index], y[index])
    }
}

/// z[i] = max(0, max(x[2i], x[2i + 1]) + bias) for i in 0..<pairs, eight at a time.
@inline(__always)
func pairMaxBiasRelu(_ x: UnsafePointer<Float>, bias: Float, into z: UnsafeMutablePointer<Float>, pairs: Int) {
    let biasVector = SIMD8<Float>(repeating: bias), zero = SIMD8<Float>()
    forEachEight(pairs) { index in
        let both = UnsafeRawPointer(x + 2 * index).loadUnaligned(as: SIMD16<Float>.self)
        var best = both.evenHalf
        best.replace(with: both.oddHalf, where: both.oddHalf .> best)
        best += biasVector
        best.replace(with: zero, where: best .< zero)
        store8(best, z + index)
    } remainder: { index in
        let best = max(x[2 * index], x[2 * index + 1]) + bias
        z[index] = best > 0 ? best : 0
    }
}

/// to[i] = from[i] for a short run (a row of an image): eight at a time, then the rest. Plain
/// loops leave runs this short to scalar code.
@inline(__always)
func copyFloats(from: UnsafePointer<Float>, to: UnsafeMutablePointer<Float>, count: Int) {
    var index = 0
    while index + 8 <= count {
        UnsafeMutableRawPointer(to + index).storeBytes(
            of: UnsafeRawPointer(from + index).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        index += 8
    }
    if index + 4 <= count {
        UnsafeMutableRawPointer(to + index).storeBytes(
            of: UnsafeRawPointer(from + index).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
        index += 4
    }
    while index < count {
        to[index] = from[index]
        index += 1
    }
}

/// to[i] += from[i] for a short run, eight at a time, then the rest.
@inline(__always)
func addFloats(_ from: UnsafePointer<Float>, into to: UnsafeMutablePointer<Float>, count: Int) {
    var index = 0
    while index + 8 <= count {
        let sum =
            UnsafeRawPointer(to + index).loadUnaligned(as: SIMD8<Float>.self)
            + UnsafeRawPointer(from + index).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(to + index).storeBytes(of: sum, as: SIMD8<Float>.self)
        index += 8
    }
    while index < count {
        to[index] += from[index]
        index += 1
    }
}
