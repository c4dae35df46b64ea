// The first layer of the presets, conv 3x3 on a one-channel image -> ReLU -> 2x2 max pooling,
// without im2col and matrix product: with one input channel each output is only 9 products, so
// the products of a general convolution would spend more time moving data than multiplying.
// Eight output channels sit in the lanes of one SIMD vector; each pooling window's four
// convolution outputs are summed in registers, pooled, biased and rectified, and only the pooled
// value is stored. Training keeps the winner of each window, and backward is sparse: only the
// winner of each window that passed ReLU receives gradient.
//
// Shape letters: N batch, O output channels, H W input, PR PC pooled output.

/// Kernels for `Convolution` when `DirectConvolution.applies` to it.
enum DirectConvolution {
    /// True when the direct kernels compute `layer`: pooled, one input channel, 3x3 kernel, no
    /// padding.
    static func applies(to layer: Convolution) -> Bool {
        layer.pooled && layer.inputShape.channels == 1 && layer.kernelSize == 3 && layer.pad == 0
    }

    /// y `[O, N, PR, PC]` = relu(b + max over each window of the convolution of x `[1, N, H, W]`);
    /// with `winners`, the index (0...3, top-left, top-right, bottom-left, bottom-right; ties to the
    /// first) of each window's maximum, as a Float, laid out like y.
    static func forward(
        layer: Convolution, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, winners: UnsafeMutablePointer<Float>?, threads: Int
    ) {
        let channels = layer.outputShape.channels, groups = (channels + 7) / 8
        let height = layer.inputShape.height, width = layer.inputShape.width
        let pooledRows = layer.outputShape.height, pooledCols = layer.outputShape.width
        let pooledPlane = pooledRows * pooledCols
        let channelsLast = layer.outputChannelsLast
        let layout = OutputLayout(channels: channels, batch: batch, plane: pooledPlane, channelsLast: channelsLast)
        parallelChunks(batch * groups, threads: threads) { items in
            // The pooled values (and winners) of eight channels, one vector per window, before
            // they are spread over the eight channel planes.
            withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 2 * pooledPlane) { buffer in
                let pooled = buffer.baseAddress.unsafelyUnwrappedForKernels, chosen = pooled + pooledPlane
                for item in items {
                    let n = item / groups, group = item % groups
                    let lanes = min(8, channels - group * 8)
                    // Tap t of channel 8 * group + lane is weight [o, t]; absent channels get 0.
                    func tap(_ t: Int) -> SIMD8<Float> {
                        var vector = SIMD8<Float>()
                        for lane in 0..<lanes { vector[lane] = parameters[(group * 8 + lane) * 9 + t] }
                        return vector
                    }
                    let t0 = tap(0), t1 = tap(1), t2 = tap(2), t3 = tap(3), t4 = tap(4)
                    let t5 = tap(5), t6 = tap(6), t7 = tap(7), t8 = tap(8)
                    var bias = SIMD8<Float>()
                    for lane in 0..<lanes { bias[lane] = parameters[channels * 9 + group * 8 + lane] }
                    let zero = SIMD8<Float>()
                    let image = input + n * height * width
                    for window in 0..<pooledPlane {
                        let pr = window / pooledCols, pc = window % pooledCols
                        let p = image + 2 * pr * width + 2 * pc
                        /// The convolution at (2pr + dy, 2pc + dx) for the eight channels.
                        @inline(__always) func convolve(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
                            var sum = t0 * SIMD8(repeating: p[0])
                            multiplyAdd(&sum, t1, SIMD8(repeating: p[1]))
                            multiplyAdd(&sum, t2, SIMD8(repeating: p[2]))
                            multiplyAdd(&sum, t3, SIMD8(repeating: p[width]))
                            multiplyAdd(&sum, t4, SIMD8(repeating: p[width + 1]))
                            multiplyAdd(&sum, t5, SIMD8(repeating: p[width + 2]))
                            multiplyAdd(&sum, t6, SIMD8(repeating: p[2 * width]))
                            multiplyAdd(&sum, t7, SIMD8(repeating: p[2 * width + 1]))
                            multiplyAdd(&sum, t8, SIMD8(repeating: p[2 * width + 2]))
                            return sum
                        }
                        let a = convolve(p), b = convolve(p + 1), c = convolve(p + width)
                        let d = convolve(p + width + 1)
                        var best = a
                        best.replace(with: b, where: b .> best)
                        best.replace(with: c, where: c .> best)
                        best.replace(with: d, where: d .> best)
                        // The winner is the first of a, b, c, d equal to the maximum, chosen with
                        // bit operations (plain selects on SIMD vectors compile to per-lane branches).
                        let maximum = best
                        @inline(__always) func winner() -> SIMD8<Float> { firstMaximum(a, b, c, d, maximum) }
                        best += bias
                        best.replace(with: zero, where: best .< zero)
                        if channelsLast && lanes == 8 {
                            // [N, PR, PC, O]: the eight channels are neighbours.
                            let at = (n * pooledPlane + window) * channels + group * 8
                            store8(best, output + at)
                            if let winners { store8(winner(), winners + at) }
                            continue
                        }
                        pooled[window] = best
                        if winners != nil { chosen[window] = winner() }
                    }
                    if channelsLast && lanes == 8 { continue }
                    let values = UnsafeRawPointer(pooled).assumingMemoryBound(to: Float.self)
                    let indices = UnsafeRawPointer(chosen).assumingMemoryBound(to: Float.self)
                    for lane in 0..<lanes {
                        let o = group * 8 + lane
                        for window in 0..<pooledPlane {
                            let at = layout.index(channel: o, sample: n, window: window)
                            output[at] = values[window * 8 + lane]
                            winners?[at] = indices[window * 8 + lane]
                        }
                    }
                }
            }
        }
    }

    /// Adds dW `[O, 1, 3, 3]` and db `[O]`; overwrites dx `[1, N, H, W]` if asked. Only each
    /// window's winner has a gradient, and only where y > 0.
    static func backward(
        layer: Convolution, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
        output: UnsafePointer<Float>, winners: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
        parameterGradient: UnsafeMutablePointer<Float>, batch: Int, parameters: UnsafePointer<Float>, threads: Int
    ) {
        let channels = layer.outputShape.channels
        let height = layer.inputShape.height, width = layer.inputShape.width
        let pooledRows = layer.outputShape.height, pooledCols = layer.outputShape.width
        let pooledPlane = pooledRows * pooledCols
        let layout = OutputLayout(
            channels: channels, batch: batch, plane: pooledPlane, channelsLast: layer.outputChannelsLast)
        /// Calls body(n, position of the winner in x's plane, gradient) for every window of
        /// channel o with a non-zero gradient.
        @inline(__always) func windows(of o: Int, _ body: (Int, Int, Float) -> Void) {
            for n in 0..<batch {
                for pr in 0..<pooledRows {
                    for pc in 0..<pooledCols {
                        let index = layout.index(channel: o, sample: n, window: pr * pooledCols + pc)
                        guard output[index] > 0 else { continue }
                        let gradient = outputGradient[index]
                        let winner = Int(winners[index])
                        body(n, (2 * pr + winner / 2) * width + 2 * pc + winner % 2, gradient)
                    }
                }
            }
        }
        if layer.outputChannelsLast && channels % 8 == 0 {
            weightGradientChannelsLast(
                layer: layer, outputGradient: outputGradient, input: input, output: output, winners: winners,
                parameterGradient: parameterGradient, batch: batch, threads: threads)
        } else {
            // One channel at a time, visiting only the winners that received a gradient.
            parallelChunks(channels, threads: threads) { range in
                for o in range {
                    var taps = SIMD16<Float>()  // 9 used
                    var biasSum: Float = 0
                    windows(of: o) { n, position, gradient in
                        let p = input + n * height * width + position
                        let patch = SIMD16<Float>(
                            p[0], p[1], p[2], p[width], p[width + 1], p[width + 2], p[2 * width],
                            p[2 * width + 1], p[2 * width + 2], 0, 0, 0, 0, 0, 0, 0)
                        taps += gradient * patch
                        biasSum += gradient
                    }
                    for t in 0..<9 { parameterGradient[o * 9 + t] += taps[t] }
                    parameterGradient[channels * 9 + o] += biasSum
                }
            }
        }
        guard let inputGradient else { return }
        inputGradient.initialize(repeating: 0, count: batch * height * width)
        for o in 0..<channels {
            let w = parameters + o * 9
            windows(of: o) { n, position, gradient in
                let dx = inputGradient + n * height * width + position
                for ky in 0..<3 {
                    for kx in 0..<3 { dx[ky * width + kx] += gradient * w[ky * 3 + kx] }
                }
            }
        }
    }

    /// dW and db eight channels at a time when the output is channels last: every window's
    /// gradient (0 where ReLU stopped it) is split by winner into four vectors, and each of the
    /// 4x4 input values under the window is broadcast against them. No branches, no gathers.
    private static func weightGradientChannelsLast(
        layer: Convolution, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
        output: UnsafePointer<Float>, winners: UnsafePointer<Float>, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, threads: Int
    ) {
        let channels = layer.outputShape.channels, groups = channels / 8
        let height = layer.inputShape.height, width = layer.inputShape.width
        let pooledRows = layer.outputShape.height, pooledCols = layer.outputShape.width
        let zero = SIMD8<Float>()
        let zeroBits = bits(zero), oneBits = bits(SIMD8(repeating: 1)), twoBits = bits(SIMD8(repeating: 2))
        let threeBits = bits(SIMD8(repeating: 3))
        parallelChunks(groups, threads: threads) { groupRange in
            for group in groupRange {
                var t0 = zero, t1 = zero, t2 = zero, t3 = zero, t4 = zero, t5 = zero, t6 = zero, t7 = zero, t8 = zero
                var biasSum = zero
                for n in 0..<batch {
                    let image = input + n * height * width
                    for pr in 0..<pooledRows {
                        for pc in 0..<pooledCols {
                            let at = ((n * pooledRows + pr) * pooledCols + pc) * channels + group * 8
                            // Masks by bit operations (plain selects on SIMD vectors compile to
                            // per-lane branches): the gradient where y > 0 and winner == d.
                            let gradient = bits(load8(outputGradient + at)) & passed(load8(output + at))
                            biasSum += float(gradient)
                            let winner = bits(load8(winners + at))
                            let g0 = float(gradient & equal(winner, zeroBits))
                            let g1 = float(gradient & equal(winner, oneBits))
                            let g2 = float(gradient & equal(winner, twoBits))
                            let g3 = float(gradient & equal(winner, threeBits))
                            // Input value (a, b) of the 4x4 patch under the window meets tap
                            // (a - dy, b - dx) through the winner at (dy, dx).
                            let p = image + 2 * pr * width + 2 * pc
                            let r0 = p, r1 = p + width, r2 = r1 + width, r3 = r2 + width
                            var x = SIMD8(repeating: r0[0])
                            multiplyAdd(&t0, g0, x)
                            x = SIMD8(repeating: r0[1])
                            multiplyAdd(&t1, g0, x)
                            multiplyAdd(&t0, g1, x)
                            x = SIMD8(repeating: r0[2])
                            multiplyAdd(&t2, g0, x)
                            multiplyAdd(&t1, g1, x)
                            x = SIMD8(repeating: r0[3])
                            multiplyAdd(&t2, g1, x)
                            x = SIMD8(repeating: r1[0])
                            multiplyAdd(&t3, g0, x)
                            multiplyAdd(&t0, g2, x)
                            x = SIMD8(repeating: r1[1])
                            multiplyAdd(&t4, g0, x)
                            multiplyAdd(&t3, g1, x)
                            multiplyAdd(&t1, g2, x)
                            multiplyAdd(&t0, g3, x)
                            x = SIMD8(repeating: r1[2])
                            multiplyAdd(&t5, g0, x)
                            multiplyAdd(&t4, g1, x)
                            multiplyAdd(&t2, g2, x)
                            multiplyAdd(&t1, g3, x)
                            x = SIMD8(repeating: r1[3])
                            multiplyAdd(&t5, g1, x)
                            multiplyAdd(&t2, g3, x)
                            x = SIMD8(repeating: r2[0])
                            multiplyAdd(&t6, g0, x)
                            multiplyAdd(&t3, g2, x)
                            x = SIMD8(repeating: r2[1])
                            multiplyAdd(&t7, g0, x)
                            multiplyAdd(&t6, g1, x)
                            multiplyAdd(&t4, g2, x)
                            multiplyAdd(&t3, g3, x)
                            x = SIMD8(repeating: r2[2])
                            multiplyAdd(&t8, g0, x)
                            multiplyAdd(&t7, g1, x)
                            multiplyAdd(&t5, g2, x)
                            multiplyAdd(&t4, g3, x)
                            x = SIMD8(repeating: r2[3])
                            multiplyAdd(&t8, g1, x)
                            multiplyAdd(&t5, g3, x)
                            x = SIMD8(repeating: r3[0])
                            multiplyAdd(&t6, g2, x)
                            x = SIMD8(repeating: r3[1])
                            multiplyAdd(&t7, g2, x)
                            multiplyAdd(&t6, g3, x)
                            x = SIMD8(repeating: r3[2])
                            multiplyAdd(&t8, g2, x)
                            multiplyAdd(&t7, g3, x)
                            x = SIMD8(repeating: r3[3])
                            multiplyAdd(&t8, g3, x)
                        }
                    }
                }
                let taps = [t0, t1, t2, t3, t4, t5, t6, t7, t8]  // once per group and call, after the loops
                for lane in 0..<8 {
                    let o = group * 8 + lane
                    for t in 0..<9 { parameterGradient[o * 9 + t] += taps[t][lane] }
                    parameterGradient[channels * 9 + o] += biasSum[lane]
                }
            }
        }
    }
}

/// sum += a * b, fused where the build targets a CPU with FMA (elsewhere the fused form would be
/// a library call per lane).
@inline(__always)
func multiplyAdd(_ sum: inout SIMD8<Float>, _ a: SIMD8<Float>, _ b: SIMD8<Float>) {
    #if ENGINE_FMA
        sum.addProduct(a, b)
    #else
        sum += a * b
    #endif
}

/// 0, 1, 2 or 3 in each lane: the first of a, b, c, d equal to `maximum` (their maximum), found
/// by comparing bit patterns.
@inline(__always)
func firstMaximum(
    _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>, _ maximum: SIMD8<Float>
) -> SIMD8<Float> {
    let bestBits = bits(maximum)
    var index = bits(SIMD8(repeating: 3))
    var isBest = equal(bits(c), bestBits)
    index = (index & ~isBest) | (bits(SIMD8(repeating: 2)) & isBest)
    isBest = equal(bits(b), bestBits)
    index = (index & ~isBest) | (bits(SIMD8(repeating: 1)) & isBest)
    isBest = equal(bits(a), bestBits)
    index = index & ~isBest
    return float(index)
}

@inline(__always)
private func bits(_ vector: SIMD8<Float>) -> SIMD8<UInt32> { unsafeBitCast(vector, to: SIMD8<UInt32>.self) }

@inline(__always)
private func float(_ bits: SIMD8<UInt32>) -> SIMD8<Float> { unsafeBitCast(bits, to: SIMD8<Float>.self) }

/// All ones in the lanes where a and b are equal, else zero.
@inline(__always)
private func equal(_ a: SIMD8<UInt32>, _ b: SIMD8<UInt32>) -> SIMD8<UInt32> {
    let difference = a ^ b
    return ((difference | (0 &- difference)) &>> 31) &- 1
}

/// All ones in the lanes where y > 0, for y >= 0 (a ReLU output; -0 counts as 0).
@inline(__always)
private func passed(_ y: SIMD8<Float>) -> SIMD8<UInt32> {
    let magnitude = bits(y) &<< 1
    return ~(((magnitude | (0 &- magnitude)) &>> 31) &- 1)
}

/// Where the value of (channel, sample, window) of a pooled output lives.
private struct OutputLayout {
    let channels: Int, batch: Int, plane: Int
    /// `[N, PR, PC, O]` if true, else `[O, N, PR, PC]`.
    let channelsLast: Bool

    @inline(__always)
    func index(channel: Int, sample: Int, window: Int) -> Int {
        channelsLast ? (sample * plane + window) * channels + channel : (channel * batch + sample) * plane + window
    }
}

/// Calls `body(i)` for i = 0, 8, 16, ... covering `0..<count` eight at a time, the last block
/// overlapping the one before so that it ends at `count`; for counts under 8, calls
/// `remainder(i)` for each index instead. Only for bodies that write each index the same value
/// however often they run.
@inline(__always)
func forEachEight(_ count: Int, _ body: (Int) -> Void, remainder: (Int) -> Void) {
    guard count >= 8 else {
        for index in 0..<count { remainder(index) }
        return
    }
    var index = 0
    while index + 8 < count {
        body(index)
        index += 8
    }
    body(count - 8)
}

@inline(__always)
func load8(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func store8(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD8<Float>.self)
}
