// Inverted dropout with masks that depend only on (call seed, layer, sample key), never on threads,
// micro-batches or internal chunking, so whichever node computes a sample draws the same mask. The
// key is the caller's (training passes each sample's `BatchPlan` key), else the sample's index
// within the call.
//
// Shape letters: N batch, C channels, H W height and width, F flat features.

/// Zeroes each value with probability `rate` during training and scales survivors by 1/(1-rate).
final class Dropout: Layer {
    let name = ""
    let inputShape: SampleShape
    var outputShape: SampleShape { inputShape }
    let rate: Float
    /// Index of this layer in the network; mixed into the mask seed.
    let layerIndex: Int
    /// Scale applied to each value in the last training forward (0 or 1/(1-rate)), same layout as x.
    private let mask = Scratch()

    init(input: SampleShape, rate: Double, layerIndex: Int) throws {
        guard rate >= 0, rate < 1 else { throw ArchitectureError("dropout rate must be in [0, 1), got \(rate)") }
        inputShape = input
        self.rate = Float(rate)
        self.layerIndex = layerIndex
    }

    /// x, y: `[N, F]` or `[C, N, H, W]`. Identity copy at inference.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let total = batch * inputShape.count
        guard context.isTraining, rate > 0 else {
            output.update(from: input, count: total)
            return
        }
        let mask = self.mask.reserve(total)
        let keep = 1 - rate, scale = 1 / (1 - rate)
        let perSample = inputShape.count
        let plane = inputShape.height * inputShape.width
        let isFlat = inputShape.isFlat
        parallelChunks(batch, threads: context.threads) { samples in
            for n in samples {
                var generator = SplitMix64(
                    seed: SplitMix64.derivedSeed(
                        context.dropoutSeed, UInt64(layerIndex), UInt64(bitPattern: Int64(context.key(ofSample: n)))))
                for feature in 0..<perSample {
                    // feature enumerates (c, y, x) of sample n, whatever the layout.
                    let index =
                        isFlat ? n * perSample + feature : ((feature / plane) * batch + n) * plane + feature % plane
                    let value: Float = generator.nextUnitFloat() < keep ? scale : 0
                    mask[index] = value
                    output[index] = input[index] * value
                }
            }
        }
    }

    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        let total = batch * inputShape.count
        guard context.isTraining, rate > 0 else {
            inputGradient.update(from: outputGradient, count: total)
            return
        }
        let mask = self.mask.pointer
        parallelChunks(total, threads: context.threads, minimumChunk: 4096) { range in
            for index in range { inputGradient[index] = outputGradient[index] * mask[index] }
        }
    }
}
