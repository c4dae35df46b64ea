// The description of a network that can rebuild it: input shape plus a list of layers. It is
// Codable so that it travels as JSON inside model-file metadata. It says nothing about weights.
import Foundation

/// Zero padding of a stride-1 convolution.
public enum Padding: String, Codable, Sendable, Equatable {
    /// No padding: output is `H - K + 1` by `W - K + 1`.
    case valid
    /// `K / 2` zeros on every side (odd K): output is `H` by `W`.
    case same
}

/// One layer of an architecture.
public enum LayerDescription: Codable, Sendable, Equatable {
    /// Stride-1 convolution with `outputChannels` filters of `kernelSize` x `kernelSize`, with bias.
    case convolution(outputChannels: Int, kernelSize: Int, padding: Padding)
    /// 2x2 max pooling with stride 2; an odd last row or column is dropped (floor).
    case maxPool
    /// max(0, x).
    case relu
    /// `[C, H, W]` per sample to a flat vector in PyTorch's NCHW flatten order.
    case flatten
    /// Fully connected layer with bias: `y = W x + b`, `W` is `[outputs, inputs]`.
    case dense(outputs: Int)
    /// Inverted dropout: during training zero each value with probability `rate` and scale the
    /// rest by `1 / (1 - rate)`; identity at inference.
    case dropout(rate: Double)
    /// Batch normalisation of each channel (or flat feature) with a learnt scale and shift; must
    /// directly follow a convolution or dense layer. Training normalises each micro-batch by its own
    /// statistics; model files hold the network folded for inference (`Network.folded()`), without it.
    case batchNorm
}

/// A network's shape: what it takes in and its layers in order. The last layer's outputs are the
/// class logits, fed to softmax cross-entropy.
public struct Architecture: Codable, Sendable, Equatable {
    /// Input `[C, H, W]` of one sample (MNIST: `[1, 28, 28]`).
    public var inputShape: [Int]
    /// The layers, input first.
    public var layers: [LayerDescription]

    public init(inputShape: [Int] = [1, 28, 28], layers: [LayerDescription]) {
        self.inputShape = inputShape
        self.layers = layers
    }

    /// Checks every size against generous bounds so that no product of them can overflow:
    /// input sides and channels 1...4096, output channels 1...65536, odd kernels 1...63,
    /// dense outputs 1...1,048,576, dropout rate in [0, 1).
    public func validateSizes() throws {
        guard inputShape.count == 3, inputShape.allSatisfy({ (1...4096).contains($0) }) else {
            throw ArchitectureError("input shape must be [C, H, W] with sizes 1...4096, got \(inputShape)")
        }
        for (index, layer) in layers.enumerated() {
            switch layer {
            case let .convolution(outputChannels, kernelSize, _):
                guard (1...65536).contains(outputChannels), (1...63).contains(kernelSize) else {
                    throw ArchitectureError(
                        "layer \(index): convolution with \(outputChannels) channels and kernel \(kernelSize) is out of range"
                    )
                }
            case let .dense(outputs):
                guard (1...1_048_576).contains(outputs) else {
                    throw ArchitectureError("layer \(index): dense with \(outputs) outputs is out of range")
                }
            case let .dropout(rate):
                guard rate >= 0, rate < 1 else {
                    throw ArchitectureError("layer \(index): dropout rate must be in [0, 1), got \(rate)")
                }
            case .batchNorm:
                guard foldTarget(ofNormalization: index) != nil else {
                    throw ArchitectureError(
                        "layer \(index): batchNorm must directly follow a convolution or dense layer, or come before "
                            + "a dense layer or a valid convolution with only flatten or dropout between")
                }
            case .maxPool, .relu, .flatten:
                break
            }
        }
    }

    /// Where the batch normalisation at `index` folds for inference: into the convolution or dense layer
    /// directly before it (`.before`), else into the first layer after it with only flatten and dropout
    /// between, which must be a dense layer or a convolution without padding (`.after`, its index):
    /// zero padding would not be normalised. Nil: it cannot be folded.
    func foldTarget(ofNormalization index: Int) -> NormalizationFold? {
        if index > 0, layers[index - 1].isConvolution || layers[index - 1].isDense { return .before }
        for next in (index + 1)..<layers.count {
            switch layers[next] {
            case .flatten, .dropout: continue
            case .dense, .convolution(_, _, .valid): return .after(next)
            default: return nil
            }
        }
        return nil
    }

    /// Compact JSON, as stored in model-file metadata.
    public func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self), let text = String(data: data, encoding: .utf8) else {
            return "{}"
        }
        return text
    }

    /// Decodes the JSON written by `jsonString()`.
    public init(jsonString: String) throws {
        self = try JSONDecoder().decode(Architecture.self, from: Data(jsonString.utf8))
    }
}

/// Where a batch normalisation folds (`Architecture.foldTarget(ofNormalization:)`).
enum NormalizationFold: Equatable {
    /// Into the layer directly before it (its outputs).
    case before
    /// Into the layer at this index after it (its inputs).
    case after(Int)
}

/// A reason why an architecture cannot be built.
public struct ArchitectureError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A named architecture selectable on the command line (`--model NAME`).
public struct ModelPreset: Sendable {
    /// The name given to `--model`.
    public let name: String
    /// One line for `--help`.
    public let summary: String
    public let architecture: Architecture

    /// The Keras MNIST example: 34,826 parameters.
    public static let classic = ModelPreset(
        name: "classic",
        summary: "Keras MNIST example: conv32-pool-conv64-pool-dropout-dense10 (34,826 parameters)",
        architecture: Architecture(layers: [
            .convolution(outputChannels: 32, kernelSize: 3, padding: .valid), .relu, .maxPool,
            .convolution(outputChannels: 64, kernelSize: 3, padding: .valid), .relu, .maxPool,
            .flatten, .dropout(rate: 0.5), .dense(outputs: 10),
        ]))

    /// The default: chosen for test accuracy per second of training on two cores. Batch normalisation
    /// after each pooling keeps the fused convolution kernels; folded, the model is a plain
    /// conv16-pool-conv32-pool-dense128-dense10 network.
    public static let fast = ModelPreset(
        name: "fast",
        summary: "default; conv16-pool-conv32-pool-dense128-dense10 with batch normalisation, best accuracy per second",
        architecture: Architecture(layers: [
            .convolution(outputChannels: 16, kernelSize: 3, padding: .valid), .relu, .maxPool, .batchNorm,
            .convolution(outputChannels: 32, kernelSize: 3, padding: .valid), .relu, .maxPool, .batchNorm,
            .flatten, .dense(outputs: 128), .batchNorm, .relu, .dropout(rate: 0.3), .dense(outputs: 10),
        ]))

    /// A bigger network for the last tenths of a percent, at about eight times the cost per image.
    public static let best = ModelPreset(
        name: "best",
        summary: "largest; conv32-pool-conv64-conv64-pool-dense256-dense10 with batch normalisation, max accuracy",
        architecture: Architecture(layers: [
            .convolution(outputChannels: 32, kernelSize: 3, padding: .valid), .relu, .maxPool, .batchNorm,
            .convolution(outputChannels: 64, kernelSize: 3, padding: .valid), .relu, .batchNorm,
            .convolution(outputChannels: 64, kernelSize: 3, padding: .valid), .relu, .maxPool, .batchNorm,
            .flatten, .dense(outputs: 256), .batchNorm, .relu, .dropout(rate: 0.4), .dense(outputs: 10),
        ]))

    /// Every preset, default first.
    public static let all: [ModelPreset] = [fast, classic, best]

    /// The preset used when none is named.
    public static let defaultPreset = fast

    /// The preset called `name`, or nil.
    public static func named(_ name: String) -> ModelPreset? {
        all.first { $0.name == name }
    }
}
