// Saving a trained network as a safetensors model file with everything a predictor or a reader
// in another language needs in the metadata, and loading one back checked: its weights must match the
// SHA-256 recorded beside them and be finite. The file format itself is `Network.load(from:)` in ConvNet.
import ConvNet
import Foundation
import MNIST

/// Metadata keys written next to the architecture (which ConvNet writes itself).
public enum ModelMetadataKey {
    public static let inputMean = "input_mean"
    public static let inputStandardDeviation = "input_std"
    public static let inputLayout = "input_layout"
    public static let trainingConfiguration = "training_config"
    public static let testAccuracy = "test_accuracy"
    public static let model = "model"
    /// SHA-256 (hex) of the model's weights as little-endian float32, in the order of the parameter
    /// slab (the file's tensors in the architecture's order): a damaged file is refused.
    public static let weightsSHA256 = "weights_sha256"
    /// The temperature `mnist calibrate` fitted (absent: 1).
    public static let temperature = "temperature"
    /// Where the training digits lie in the network's features (`FeatureDistribution`), fitted by
    /// `mnist calibrate`: the class means and the covariance's Cholesky factor (base64 of little-endian
    /// float32), and the distance beyond which an input is unlike them.
    public static let featureMeans = "feature_means"
    public static let featureCholesky = "feature_cholesky"
    public static let featureThreshold = "feature_threshold"
}

extension ModelMetadataKey {
    /// The metadata every file of a run carries: the input normalisation, the configuration, the preset.
    static func common(configuration: TrainingConfiguration) -> [String: String] {
        [
            inputMean: "\(InputNormalization.mean)",
            inputStandardDeviation: "\(InputNormalization.standardDeviation)",
            inputLayout: "NCHW [N,1,28,28], value = (pixel/255 - input_mean) / input_std",
            trainingConfiguration: configuration.jsonString(),
            model: configuration.model,
        ]
    }
}

extension Network {
    /// Writes the network atomically to `url` with the input normalisation, the training
    /// configuration (JSON) and the test accuracy in the metadata.
    public func save(to url: URL, configuration: TrainingConfiguration, testAccuracy: Double) throws {
        var metadata = ModelMetadataKey.common(configuration: configuration)
        metadata[ModelMetadataKey.testAccuracy] = String(format: "%.4f", testAccuracy)
        metadata[ModelMetadataKey.weightsSHA256] = Self.digest(of: parameters)
        try save(to: url, metadata: metadata)
    }

    /// SHA-256 (hex) of `values` as little-endian float32.
    static func digest(of values: [Float]) -> String {
        values.withUnsafeBytes { Data($0) }.sha256Hex  // Linux on x86-64 and arm64 is little-endian.
    }

    /// Loads a model (or checkpoint) file and checks it: its weights must have the SHA-256 recorded in
    /// its metadata (files written before it was recorded have none) and must all be finite. Throws
    /// `ModelFileError` naming the file and what is wrong.
    public static func loadChecked(from url: URL) throws -> (network: Network, metadata: [String: String]) {
        let (network, metadata) = try load(from: url)
        let parameters = network.parameters
        if let recorded = metadata[ModelMetadataKey.weightsSHA256], recorded != digest(of: parameters) {
            throw ModelFileError(
                path: url.path,
                reason: "its weights do not match the SHA-256 recorded in it: the file is damaged; train again or "
                    + "restore a copy")
        }
        if let bad = parameters.firstIndex(where: { !$0.isFinite }) {
            let tensor = network.layout.tensors.first { $0.range.contains(bad) }?.name ?? "?"
            throw ModelFileError(
                path: url.path,
                reason: "weight \(bad) (in \(tensor)) is \(parameters[bad]): the model is not usable; train again")
        }
        return (network, metadata)
    }
}
