// Optimizers that update the flat parameter slab from a mean gradient slab, and learning-rate
// schedules. They know nothing about layers: one loop over the slab each. Gradient clipping and
// per-tensor settings are left out.
import Foundation

/// Which update rule.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// SGD with (heavy-ball) momentum: v = m v + g; p -= lr v.
    case sgd
    /// Adam (Kingma & Ba) with bias correction; weight decay, if any, is decoupled (AdamW).
    case adam
}

/// Settings of an optimizer.
public struct OptimizerSettings: Codable, Sendable, Equatable {
    public var kind: OptimizerKind
    /// SGD momentum coefficient.
    public var momentum: Float
    /// Adam decay rates and epsilon.
    public var beta1: Float, beta2: Float, epsilon: Float
    /// L2 weight decay (added to the gradient for SGD, decoupled for Adam). 0 disables it.
    public var weightDecay: Float

    public init(
        kind: OptimizerKind, momentum: Float = 0.9, beta1: Float = 0.9, beta2: Float = 0.999,
        epsilon: Float = 1e-8, weightDecay: Float = 0
    ) {
        self.kind = kind
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

/// An optimizer with its state slabs (momentum, or Adam's two moments), laid out like the
/// parameter slab. Deterministic: the same gradients give bit-identical parameters.
public struct Optimizer: Sendable {
    public let settings: OptimizerSettings
    /// SGD velocity or Adam first moment, `[parameterCount]`.
    public var firstMoment: [Float]
    /// Adam second moment, `[parameterCount]`; empty for SGD.
    public var secondMoment: [Float]
    /// Updates applied so far.
    public var step: Int = 0

    public init(settings: OptimizerSettings, parameterCount: Int) {
        self.settings = settings
        firstMoment = [Float](repeating: 0, count: parameterCount)
        secondMoment = settings.kind == .adam ? [Float](repeating: 0, count: parameterCount) : []
    }

    /// One update of `parameters` with the MEAN gradient `gradient` (same layout) at `learningRate`.
    public mutating func apply(gradient: [Float], to parameters: inout [Float], learningRate: Float) {
        precondition(gradient.count == parameters.count && gradient.count == firstMoment.count, "slab sizes differ")
        step += 1
        let count = parameters.count, decay = settings.weightDecay
        switch settings.kind {
        case .sgd:
            let momentum = settings.momentum
            gradient.withUnsafeBufferPointer { g in
                parameters.withUnsafeMutableBufferPointer { p in
                    firstMoment.withUnsafeMutableBufferPointer { v in
                        let (g, p, v) = (
                            g.baseAddress.unsafelyUnwrappedForKernels, p.baseAddress.unsafelyUnwrappedForKernels,
                            v.baseAddress.unsafelyUnwrappedForKernels
                        )
                        // Element by element: any split over threads gives the same bits.
                        let momentum = Vector(repeating: momentum), decay = Vector(repeating: decay)
                        let rate = Vector(repeating: learningRate)
                        parallelChunks(count, threads: ComputeThreads.kernelThreadCount, minimumChunk: 16384) {
                            for i in stride(from: $0.lowerBound, to: $0.upperBound, by: Vector.scalarCount) {
                                let n = min(Vector.scalarCount, $0.upperBound - i)
                                var (pi, vi) = (Vector(loading: p + i, count: n), Vector(loading: v + i, count: n))
                                let direction = Vector(loading: g + i, count: n) + decay * pi
                                vi = momentum * vi + direction
                                pi -= rate * vi
                                pi.store(to: p + i, count: n)
                                vi.store(to: v + i, count: n)
                            }
                        }
                    }
                }
            }
        case .adam:
            let beta1 = settings.beta1, beta2 = settings.beta2, epsilon = settings.epsilon
            let correction1 = 1 - Float(pow(Double(beta1), Double(step)))
            let correction2 = 1 - Float(pow(Double(beta2), Double(step)))
            let stepSize = learningRate / correction1
            let root2 = correction2.squareRoot()
            gradient.withUnsafeBufferPointer { g in
                parameters.withUnsafeMutableBufferPointer { p in
                    firstMoment.withUnsafeMutableBufferPointer { m in
                        secondMoment.withUnsafeMutableBufferPointer { v in
                            let (g, p, m, v) = (
                                g.baseAddress.unsafelyUnwrappedForKernels, p.baseAddress.unsafelyUnwrappedForKernels,
                                m.baseAddress.unsafelyUnwrappedForKernels, v.baseAddress.unsafelyUnwrappedForKernels
                            )
                            // Element by element: any split over threads gives the same bits.
                            let (beta1, beta2) = (Vector(repeating: beta1), Vector(repeating: beta2))
                            let (keep1, keep2) = (1 - beta1, 1 - beta2)
                            let (stepSize, root2) = (Vector(repeating: stepSize), Vector(repeating: root2))
                            let (epsilon, rateDecay) = (
                                Vector(repeating: epsilon), Vector(repeating: learningRate * decay)
                            )
                            parallelChunks(count, threads: ComputeThreads.kernelThreadCount, minimumChunk: 16384) {
                                for i in stride(from: $0.lowerBound, to: $0.upperBound, by: Vector.scalarCount) {
                                    let n = min(Vector.scalarCount, $0.upperBound - i)
                                    let gi = Vector(loading: g + i, count: n)
                                    var pi = Vector(loading: p + i, count: n)
                                    let mi = beta1 * Vector(loading: m + i, count: n) + keep1 * gi
                                    let vi = beta2 * Vector(loading: v + i, count: n) + keep2 * gi * gi
                                    pi -= stepSize * mi / (vi.squareRoot() / root2 + epsilon) + rateDecay * pi
                                    pi.store(to: p + i, count: n)
                                    mi.store(to: m + i, count: n)
                                    vi.store(to: v + i, count: n)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The optimizers' vector: eight Floats, one AVX register. Each lane computes exactly what the scalar
/// formula would (no fused multiply-adds), so results do not depend on where a slab is split.
private typealias Vector = SIMD8<Float>

extension SIMD8 where Scalar == Float {
    /// The first `count` (at most 8) values at `pointer`; the other lanes are 0.
    @inline(__always)
    fileprivate init(loading pointer: UnsafePointer<Float>, count: Int) {
        if count == Self.scalarCount {
            self = UnsafeRawPointer(pointer).loadUnaligned(as: Self.self)
        } else {
            self.init()
            for lane in 0..<count { self[lane] = pointer[lane] }
        }
    }

    /// Stores the first `count` (at most 8) lanes at `pointer`.
    @inline(__always)
    fileprivate func store(to pointer: UnsafeMutablePointer<Float>, count: Int) {
        if count == Self.scalarCount {
            UnsafeMutableRawPointer(pointer).storeBytes(of: self, as: Self.self)
        } else {
            for lane in 0..<count { pointer[lane] = self[lane] }
        }
    }
}

/// How the learning rate moves over a run of `totalSteps` updates.
public enum LearningRateSchedule: String, Codable, Sendable, CaseIterable {
    /// The peak rate throughout.
    case constant
    /// Linear warm-up from peak/25 over the first 15% of steps, then cosine down to peak/1e4
    /// (Smith's one-cycle policy, as in PyTorch's OneCycleLR with pct_start 0.15).
    case oneCycle = "one-cycle"
    /// Cosine from the peak at step 0 to 0 at the last step.
    case cosine

    /// One line for `--help`.
    public var summary: String {
        switch self {
        case .constant: "the same rate for every step"
        case .oneCycle: "warm up for 15% of steps, then cosine anneal (default)"
        case .cosine: "cosine decay from the peak to zero"
        }
    }

    /// The rate for update `step` (0-based) of `totalSteps`.
    public func learningRate(peak: Float, step: Int, totalSteps: Int) -> Float {
        let total = max(1, totalSteps)
        let progress = min(1, max(0, Double(step) / Double(total)))
        switch self {
        case .constant:
            return peak
        case .cosine:
            return Float(Double(peak) * 0.5 * (1 + cos(Double.pi * progress)))
        case .oneCycle:
            let warmup = 0.15, start = Double(peak) / 25, end = Double(peak) / 1e4
            if progress < warmup {
                return Float(start + (Double(peak) - start) * progress / warmup)
            }
            let fraction = (progress - warmup) / (1 - warmup)
            return Float(end + (Double(peak) - end) * 0.5 * (1 + cos(Double.pi * fraction)))
        }
    }
}
