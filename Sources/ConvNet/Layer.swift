// What every layer has in common: per-sample shapes, its parameter table, and forward/backward
// over raw buffers. Layers hold only their configuration and scratch; parameters and gradients
// live in the network's slabs and are passed in as pointers to the layer's first tensor.
//
// Activation layout. Before `flatten`, activations are channel-major `[C, N, H, W]` (CNHW): one
// sgemm then covers the whole batch and writes its result straight into the next activation with
// no transposition. After `flatten` they are `[N, F]` with F in PyTorch's NCHW flatten order.
// For C = 1 (MNIST input), CNHW and NCHW are the same bytes.

/// The shape of one sample's activation: `[C, H, W]`, or a flat vector of `channels` values.
struct SampleShape: Equatable {
    var channels: Int
    var height: Int
    var width: Int
    var isFlat: Bool

    static func image(_ channels: Int, _ height: Int, _ width: Int) -> SampleShape {
        SampleShape(channels: channels, height: height, width: width, isFlat: false)
    }

    static func flat(_ count: Int) -> SampleShape {
        SampleShape(channels: count, height: 1, width: 1, isFlat: true)
    }

    /// Values per sample.
    var count: Int { channels * height * width }
}

/// Per-call settings handed to every layer.
struct LayerContext {
    /// Dropout active, inputs kept for backward.
    var isTraining: Bool
    /// Seed of this call's dropout masks; sample `i` of the call uses a stream derived from it,
    /// the layer index and `firstSample + i`, so masks do not depend on internal batching.
    var dropoutSeed: UInt64
    /// Index, within the caller's batch, of the first sample in this chunk.
    var firstSample: Int
    /// The caller's key of each sample of this chunk, when it gave keys: `[N]`. Sample `n`'s dropout
    /// mask then depends on `sampleKeys[n]` instead of `firstSample + n`.
    var sampleKeys: UnsafePointer<Int>? = nil
    /// Threads the layer's kernels may use for this call (1 inside one of the network's lanes).
    var threads: Int = ComputeThreads.kernelThreadCount
    /// The statistics batch-normalisation layers use.
    var normalization: NormalizationSource = .batch

    /// The key that decides sample `n`'s random streams.
    func key(ofSample n: Int) -> Int { sampleKeys.map { $0[n] } ?? (firstSample + n) }
}

/// A layer: forward and backward over raw buffers of `batch` samples.
///
/// Contract: `forward` overwrites `output`. `backward` ADDS parameter gradients into
/// `parameterGradient` (the layer's part of the gradient slab) and OVERWRITES `inputGradient`
/// when it is non-nil (the first layer passes nil to skip that work). `backward` may use scratch
/// saved by the preceding `forward` on the same batch.
protocol Layer: AnyObject {
    /// Tensor-name prefix such as `conv1`; empty for layers without parameters.
    var name: String { get }
    var inputShape: SampleShape { get }
    var outputShape: SampleShape { get }
    /// The layer's tensors (full name, PyTorch shape) in slab order; empty if none.
    var parameterTable: [(name: String, shape: [Int])] { get }
    /// Fills the layer's parameters with seeded initial values.
    func initialize(parameters: UnsafeMutablePointer<Float>, generator: inout SplitMix64)
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
        parameters: UnsafePointer<Float>, context: LayerContext)
    func backward(
        outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, parameterGradient: UnsafeMutablePointer<Float>,
        batch: Int, parameters: UnsafePointer<Float>, context: LayerContext)
}

extension Layer {
    var parameterTable: [(name: String, shape: [Int])] { [] }
    var parameterCount: Int { parameterTable.reduce(0) { $0 + $1.shape.reduce(1, *) } }
    func initialize(parameters: UnsafeMutablePointer<Float>, generator: inout SplitMix64) {}
}

/// Fills `count` values uniformly in [-limit, limit].
func fillUniform(_ pointer: UnsafeMutablePointer<Float>, count: Int, limit: Float, generator: inout SplitMix64) {
    for index in 0..<count {
        pointer[index] = (generator.nextUnitFloat() * 2 - 1) * limit
    }
}
