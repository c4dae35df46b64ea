// Saving a network to, and rebuilding it from, a safetensors model file. The architecture JSON
// travels in the metadata under `architecture`; other metadata (normalisation, training config,
// accuracy) is the caller's and is kept as given.
import Foundation

extension Network {
    /// Metadata keys written by `save`.
    public enum MetadataKey {
        public static let architecture = "architecture"
        public static let formatVersion = "format_version"
    }

    /// The model-file format version written by this code.
    public static let modelFormatVersion = "1"

    /// Tensors whose names start with this are a checkpoint's training state (weights, optimizer
    /// moments, moving average), not part of the model: `load` skips them, so a checkpoint is also a
    /// model file.
    public static let trainingStatePrefix = "checkpoint."

    /// Every tensor of the parameter slab with its PyTorch name and shape.
    public var namedTensors: [NamedTensor] {
        layout.tensors.map { NamedTensor(name: $0.name, shape: $0.shape, values: Array(parameters[$0.range])) }
    }

    /// Writes the parameters and `metadata` plus the architecture and format version to `url`,
    /// atomically.
    public func save(to url: URL, metadata: [String: String] = [:]) throws {
        var metadata = metadata
        metadata[MetadataKey.architecture] = architecture.jsonString()
        metadata[MetadataKey.formatVersion] = Network.modelFormatVersion
        try SafeTensors.write(tensors: namedTensors, metadata: metadata, to: url)
    }

    /// Rebuilds a network from a file written by `save`; throws `ModelFileError` naming the file
    /// when it is unreadable, damaged, foreign, or its tensors do not match its architecture.
    public static func load(from url: URL) throws -> (network: Network, metadata: [String: String]) {
        let path = url.path
        let (tensors, metadata) = try SafeTensors.read(from: url)
        guard let json = metadata[MetadataKey.architecture] else {
            throw ModelFileError(
                path: path, reason: "no architecture in the metadata; not a model file written by this program")
        }
        if let version = metadata[MetadataKey.formatVersion], version != modelFormatVersion {
            throw ModelFileError(
                path: path, reason: "format version \(version), this program reads version \(modelFormatVersion)")
        }
        let network: Network
        do {
            network = try Network(architecture: try Architecture(jsonString: json), seed: 0)
        } catch {
            throw ModelFileError(path: path, reason: "architecture in the metadata cannot be built: \(error)")
        }
        var byName = [String: NamedTensor]()
        for tensor in tensors where !tensor.name.hasPrefix(trainingStatePrefix) { byName[tensor.name] = tensor }
        for view in network.layout.tensors {
            guard let tensor = byName.removeValue(forKey: view.name) else {
                throw ModelFileError(path: path, reason: "tensor \(view.name) is missing")
            }
            guard tensor.shape == view.shape else {
                throw ModelFileError(
                    path: path,
                    reason: "tensor \(view.name) has shape \(tensor.shape), the architecture needs \(view.shape)")
            }
            network.parameters.replaceSubrange(view.range, with: tensor.values)
        }
        if let extra = byName.keys.sorted().first {
            throw ModelFileError(path: path, reason: "tensor \(extra) is not part of the architecture")
        }
        return (network, metadata)
    }
}
