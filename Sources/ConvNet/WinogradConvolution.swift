// The forward pass of a pooled 3x3 convolution by Winograd's F(2x2, 3x3), in training and in
// inference: each 2x2 block of outputs (exactly one pooling window) is computed from its 4x4 input
// patch with 16 products per channel pair instead of 36, as 16 matrix products of [tiles, C] x
// [C, O]; in training the output transform also keeps each window's winner. Backward stays with
// im2col (`Convolution.backward` builds its columns itself).
//
// With d the 4x4 input patch, g the 3x3 kernel and
//   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 -1 -1],
// the 2x2 outputs are Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, summed over input channels (Lavin & Gray 2016).
//
// Shape letters: N batch, C input channels, O output channels, T tiles (N x PR x PC), ξ one of
// the 16 positions of a transformed 4x4 patch.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The buffers of one layer's Winograd forward, reused from call to call.
final class WinogradScratch {
    /// Transformed weights `[16, O, C]`, patches `[16, T, C]` and products `[16, O, T]`.
    let weights = Scratch(), patches = Scratch(), products = Scratch()
    /// The weights `weights` was transformed from, once `hasSource`.
    let source = Scratch()
    var hasSource = false
}

/// Kernels for `Convolution` when `WinogradConvolution.applies` to it.
enum WinogradConvolution {
    /// Pooled, 3x3, no padding, input channels last with a multiple of 8 channels.
    static func applies(to layer: Convolution) -> Bool {
        layer.pooled && layer.kernelSize == 3 && layer.pad == 0 && layer.inputChannelsLast
            && layer.inputShape.channels % 8 == 0 && !layer.isDirect
    }

    /// y `[O, N, PR, PC]` = relu(b + max over each 2x2 window of the convolution of x `[N, H, W, C]`).
    static func forward(
        layer: Convolution, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, scratch: WinogradScratch, winners: UnsafeMutablePointer<Float>?
    ) {
        let channels = layer.inputShape.channels, outputs = layer.outputShape.channels
        let width = layer.inputShape.width, height = layer.inputShape.height
        let pooledRows = layer.outputShape.height, pooledCols = layer.outputShape.width
        let pooledPlane = pooledRows * pooledCols
        // A few samples per pass, so that the patches and products stay in the core's own cache.
        let samplesPerPass = 4
        let u = scratch.weights.reserve(16 * outputs * channels)  // [16, O, C]
        let v = scratch.patches.reserve(16 * min(batch, samplesPerPass) * pooledPlane * channels)  // [16, T, C]
        let m = scratch.products.reserve(16 * min(batch, samplesPerPass) * pooledPlane * outputs)  // [16, O, T]
        // The weights change once per step, and a step runs several chunks: transform only new ones.
        let weightCount = outputs * channels * 9
        let source = scratch.source.reserve(weightCount)
        if !scratch.hasSource || memcmp(source, parameters, weightCount * MemoryLayout<Float>.size) != 0 {
            transformWeights(parameters, into: u, outputs: outputs, channels: channels)
            source.update(from: parameters, count: weightCount)
            scratch.hasSource = true
        }
        let bias = parameters + outputs * channels * 9
        for first in stride(from: 0, to: batch, by: samplesPerPass) {
            let count = min(samplesPerPass, batch - first)
            transformPatches(
                layer: layer, input: input + first * height * width * channels, into: v, samples: count)
            let tiles = count * pooledPlane
            // M[ξ][o, t] = U[ξ][o, :] · V[ξ][t, :]
            for xi in 0..<16 {
                BLAS.sgemm(
                    transposeB: true, m: outputs, n: tiles, k: channels, a: u + xi * outputs * channels,
                    b: v + xi * tiles * channels, c: m + xi * tiles * outputs)
            }
            transformProducts(
                layer: layer, products: m, bias: bias, output: output, winners: winners, batch: batch, first: first,
                samples: count)
        }
    }

    /// V[ξ][t, c] = (Bᵀ d B)[ξ] for the patch of tile t of `samples` images `[N, H, W, C]`, eight
    /// channels at a time.
    private static func transformPatches(
        layer: Convolution, input: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>, samples: Int
    ) {
        let channels = layer.inputShape.channels
        let width = layer.inputShape.width, height = layer.inputShape.height
        let pooledRows = layer.outputShape.height, pooledCols = layer.outputShape.width
        let tiles = samples * pooledRows * pooledCols
        let groups = channels / 8
        for n in 0..<samples {
            let image = input + n * height * width * channels
            for ty in 0..<pooledRows {
                for tx in 0..<pooledCols {
                    let tile = (n * pooledRows + ty) * pooledCols + tx
                    let corner = image + (2 * ty * width + 2 * tx) * channels
                    for group in 0..<groups {
                        let p = corner + group * 8
                        @inline(__always) func d(_ i: Int, _ j: Int) -> SIMD8<Float> {
                            load8(p + (i * width + j) * channels)
                        }
                        let target = v + tile * channels + group * 8
                        let stride = tiles * channels
                        // Column j of Bᵀ d, then row i of (Bᵀ d) B, all in registers.
                        @inline(__always) func column(_ j: Int) -> (
                            SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>
                        ) {
                            let d0 = d(0, j), d1 = d(1, j), d2 = d(2, j), d3 = d(3, j)
                            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                        }
                        let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3)
                        @inline(__always) func row(
                            _ i: Int, _ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>
                        ) {
                            let r = target + i * 4 * stride
                            store8(r0 - r2, r)
                            store8(r1 + r2, r + stride)
                            store8(r2 - r1, r + 2 * stride)
                            store8(r1 - r3, r + 3 * stride)
                        }
                        row(0, c0.0, c1.0, c2.0, c3.0)
                        row(1, c0.1, c1.1, c2.1, c3.1)
                        row(2, c0.2, c1.2, c2.2, c3.2)
                        row(3, c0.3, c1.3, c2.3, c3.3)
                    }
                }
            }
        }
    }

    /// y[o, first + n, window] = relu(b[o] + max of (Aᵀ M A) for tile (n, window)); eight tiles at
    /// a time, which are neighbours in y.
    private static func transformProducts(
        layer: Convolution, products m: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, winners: UnsafeMutablePointer<Float>?, batch: Int, first: Int,
        samples: Int
    ) {
        let outputs = layer.outputShape.channels
        let pooledPlane = layer.outputShape.height * layer.outputShape.width
        let tiles = samples * pooledPlane, stride = outputs * tiles
        let zero = SIMD8<Float>()
        for o in 0..<outputs {
            let row = m + o * tiles
            let target = output + (o * batch + first) * pooledPlane
            let biasVector = SIMD8<Float>(repeating: bias[o])
            forEachEight(tiles) { t in
                @inline(__always) func at(_ i: Int, _ j: Int) -> SIMD8<Float> { load8(row + (i * 4 + j) * stride + t) }
                // Rows of Aᵀ M (a, b), then their products with A: the window's four outputs.
                let a0 = at(0, 0) + at(1, 0) + at(2, 0), b0 = at(1, 0) - at(2, 0) - at(3, 0)
                let a1 = at(0, 1) + at(1, 1) + at(2, 1), b1 = at(1, 1) - at(2, 1) - at(3, 1)
                let a2 = at(0, 2) + at(1, 2) + at(2, 2), b2 = at(1, 2) - at(2, 2) - at(3, 2)
                let a3 = at(0, 3) + at(1, 3) + at(2, 3), b3 = at(1, 3) - at(2, 3) - at(3, 3)
                let y00 = a0 + a1 + a2, y01 = a1 - a2 - a3, y10 = b0 + b1 + b2, y11 = b1 - b2 - b3
                var best = y00
                best.replace(with: y01, where: y01 .> best)
                best.replace(with: y10, where: y10 .> best)
                best.replace(with: y11, where: y11 .> best)
                if let winners {
                    store8(firstMaximum(y00, y01, y10, y11, best), winners + (target - output) + t)
                }
                best += biasVector
                best.replace(with: zero, where: best .< zero)
                store8(best, target + t)
            } remainder: { t in
                @inline(__always) func at(_ i: Int, _ j: Int) -> Float { row[(i * 4 + j) * stride + t] }
                let a0 = at(0, 0) + at(1, 0) + at(2, 0), b0 = at(1, 0) - at(2, 0) - at(3, 0)
                let a1 = at(0, 1) + at(1, 1) + at(2, 1), b1 = at(1, 1) - at(2, 1) - at(3, 1)
                let a2 = at(0, 2) + at(1, 2) + at(2, 2), b2 = at(1, 2) - at(2, 2) - at(3, 2)
                let a3 = at(0, 3) + at(1, 3) + at(2, 3), b3 = at(1, 3) - at(2, 3) - at(3, 3)
                let y00 = a0 + a1 + a2, y01 = a1 - a2 - a3, y10 = b0 + b1 + b2, y11 = b1 - b2 - b3
                let maximum = max(max(y00, y01), max(y10, y11))
                if let winners {
                    winners[(target - output) + t] = y00 == maximum ? 0 : y01 == maximum ? 1 : y10 == maximum ? 2 : 3
                }
                target[t] = max(0, maximum + bias[o])
            }
        }
    }

    /// U[ξ][o, c] = (G g Gᵀ)[ξ] for the kernel g = W[o, c] (`[O, C, 3, 3]`).
    private static func transformWeights(
        _ weight: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>, outputs: Int, channels: Int
    ) {
        let stride = outputs * channels
        for o in 0..<outputs {
            for c in 0..<channels {
                let g = weight + (o * channels + c) * 9
                // G g: 4 rows of 3, as SIMD4 columns k.
                var t = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())
                func column(_ k: Int) -> SIMD4<Float> {
                    let g0 = g[k], g1 = g[3 + k], g2 = g[6 + k]
                    return SIMD4(g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)
                }
                t = (column(0), column(1), column(2))
                // (G g) Gᵀ: 4 rows of 4.
                let target = u + o * channels + c
                for i in 0..<4 {
                    let t0 = t.0[i], t1 = t.1[i], t2 = t.2[i]
                    target[(i * 4 + 0) * stride] = t0
                    target[(i * 4 + 1) * stride] = (t0 + t1 + t2) / 2
                    target[(i * 4 + 2) * stride] = (t0 - t1 + t2) / 2
                    target[(i * 4 + 3) * stride] = t2
                }
            }
        }
    }
}
