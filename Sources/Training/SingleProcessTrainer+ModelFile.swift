// Saving a trained network as a safetensors model file with everything a predictor or a reader
// in another language needs in the metadata. Loading is `Network.load(from:)` in ConvNet.
import ConvNet
import Foundation

/// Metadata keys written next to the architecture (which ConvNet writes itself).
public enum ModelMetadataKey {
    public static let inputMean = "input_mean"
    public static let inputStandardDeviation = "input_std"
    public static let inputLayout = "input_layout"
    public static let trainingConfiguration = "training_config"
    public static let testAccuracy = "test_accuracy"
    public static let model = "model"
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
        try save(to: url, metadata: metadata)
    }
}
