// Batch normalisation over the samples of one call ("ghost" batch normalisation: training normalises
// each fixed micro-batch by its own statistics, so a step's result does not depend on how its
// micro-batches are spread over workers). At inference the layer uses population statistics that
// `Network.calibrateNormalization` measures after training, and `Network.folded()` folds them and the
// scale and shift into the convolution or dense layer before, so model files hold a plain network.
//
// Shape letters: N batch, C channels, H W height and width, P = H * W, F flat features.

/// Where batch-normalisation layers take their mean and variance from.
enum NormalizationSource {
    /// The call's own samples (training).
    case batch
    /// The call's own samples, and each layer adds its batch mean and unbiased variance to the slab
    /// (laid out like `Network.normalization`): calibration.
    case recording(UnsafeMutablePointer<Float>)
    /// Population statistics, laid out like `Network.normalization` (inference).
    case population(UnsafePointer<Float>)
}

/// y = γ (x − mean) / sqrt(var + ε) + β per channel (images) or feature (flat), ε = 1e-5 as in PyTorch.
final class BatchNormalization: Layer {
    static let epsilon: Double = 1e-5
    let name: String
    let inputShape: SampleShape
    var outputShape: SampleShape { inputShape }
    /// Offset of this layer's `[mean C, variance C]` in the network's statistics slab.
    let statisticsOffset: Int
    /// The last forward's mean and 1 / sqrt(var + ε) per channel, `[2, C]`, for backward.
    private let saved = Scratch()
    /// Images are `[N, H, W, C]` (channels last) instead of `[C, N, H, W]`: set by the network between
    /// a direct convolution and the convolution it feeds, which exchange that layout.
    var channelsLast = false

    init(name: String, input: SampleShape, statisticsOffset: Int) {
        self.name = name
        self.inputShape = input
        self.statisticsOffset = statisticsOffset
    }

    var channels: Int { inputShape.channels }

    var parameterTable: [(name: String, shape: [Int])] {
        [("\(name).weight", [channels]), ("\(name).bias", [channels])]
    }

    /// The statistics this layer keeps: PyTorch's buffer names.
    var statisticsTable: [(name: String, shape: [Int])] {
        [("\(name).running_mean", [channels]), ("\(name).running_var", [channels])]
    }

    /// γ = 1, β = 0.
    func initialize(parameters: UnsafeMutablePointer<Float>, generator: inout SplitMix64) {
        parameters.initialize(repeating: 1, count: channels)
        (parameters + channels).initialize(repeating: 0, count: channels)
    }

    /// Values of channel `c` for a batch: `count` of them, `stride` apart, from `start`.
    private func channel(_ c: Int, batch: Int) -> (start: Int, count: Int, stride: Int) {
        let plane = inputShape.height * inputShape.width
        if inputShape.isFlat { return (c, batch, channels) }
        return channelsLast ? (c, batch * plane, channels) : (c * batch * plane, batch * plane, 1)
    }

    /// x, y: `[C, N, H, W]` or `[N, F]`.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let saved = self.saved.reserve(2 * channels)
        for c in 0..<channels {
            let (start, count, stride) = channel(c, batch: batch)
            let mean: Double, variance: Double
            if case .population(let statistics) = context.normalization {
                mean = Double(statistics[statisticsOffset + c])
                variance = Double(statistics[statisticsOffset + channels + c])
            } else {
                var sum = 0.0
                for i in 0..<count { sum += Double(input[start + i * stride]) }
                mean = sum / Double(count)
                var squares = 0.0
                for i in 0..<count {
                    let d = Double(input[start + i * stride]) - mean
                    squares += d * d
                }
                variance = squares / Double(count)
                if case .recording(let sink) = context.normalization {
                    sink[statisticsOffset + c] += Float(mean)
                    sink[statisticsOffset + channels + c] += Float(count > 1 ? squares / Double(count - 1) : 0)
                }
            }
            let inverse = 1 / (variance + BatchNormalization.epsilon).squareRoot()
            saved[c] = Float(mean)
            saved[channels + c] = Float(inverse)
            let scale = Float(Double(parameters[c]) * inverse)
            let shift = Float(Double(parameters[channels + c]) - mean * Double(parameters[c]) * inverse)
            for i in 0..<count { output[start + i * stride] = input[start + i * stride] * scale + shift }
        }
    }

    /// With batch statistics: dβ = Σ dy, dγ = Σ dy x̂, dx = γ / σ · (dy − mean(dy) − x̂ mean(dy x̂)).
    /// With population statistics the mean and variance are constants: dx = γ / σ · dy.
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let saved = self.saved.pointer
        let fromBatch: Bool
        if case .population = context.normalization { fromBatch = false } else { fromBatch = true }
        for c in 0..<channels {
            let (start, count, stride) = channel(c, batch: batch)
            let mean = saved[c], inverse = saved[channels + c]
            var sum: Float = 0, dot: Float = 0
            for i in 0..<count {
                let dy = outputGradient[start + i * stride]
                sum += dy
                dot += dy * (input[start + i * stride] - mean) * inverse
            }
            parameterGradient[c] += dot
            parameterGradient[channels + c] += sum
            guard let inputGradient else { continue }
            let gain = parameters[c] * inverse
            if !fromBatch {
                for i in 0..<count { inputGradient[start + i * stride] = gain * outputGradient[start + i * stride] }
                continue
            }
            let meanGradient = sum / Float(count), meanDot = dot / Float(count)
            for i in 0..<count {
                let normalized = (input[start + i * stride] - mean) * inverse
                inputGradient[start + i * stride] =
                    gain * (outputGradient[start + i * stride] - meanGradient - normalized * meanDot)
            }
        }
    }
}
