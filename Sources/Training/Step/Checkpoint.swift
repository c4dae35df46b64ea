// A run's checkpoint: everything a `TrainingStep` changes (weights, optimizer state, moving average,
// the step reached) with the configuration and a fingerprint of the training data, so that a resumed
// run continues exactly where the interrupted one stopped and writes the same model file, bit for
// bit. It is a safetensors file whose model tensors are the model as it stands (what `evaluate` and
// `predict` read), plus the training state as `checkpoint.*` tensors that model loading skips.
import ConvNet
import DataParallel
import Foundation
import MNIST

/// The state of a run after `step` steps.
public struct Checkpoint: Equatable {
    /// Steps done (the next one to run).
    public var step: Int
    public var configuration: TrainingConfiguration
    /// SHA-256 of the training set's pixels and labels (`TrainingData.fingerprint`).
    public var dataFingerprint: String
    /// The weights being trained, `[parameterCount]`.
    public var weights: [Float]
    /// The optimizer's moments (`Optimizer.firstMoment`, `secondMoment`).
    public var firstMoment: [Float]
    public var secondMoment: [Float]
    /// The moving average of the weights (empty before the first step or without an average).
    public var average: [Float]

    /// Metadata keys of a checkpoint file, beside the model file's own.
    public enum Key {
        public static let step = "checkpoint_step"
        public static let dataFingerprint = "training_data_sha256"
        public static let weights = "checkpoint.weights"
        public static let firstMoment = "checkpoint.first_moment"
        public static let secondMoment = "checkpoint.second_moment"
        public static let average = "checkpoint.average"
    }

    /// The default checkpoint path for a model written to `output`: `model.safetensors` →
    /// `model.checkpoint.safetensors`, beside it.
    public static func defaultURL(forOutput output: URL) -> URL {
        let name = output.lastPathComponent
        let base = name.hasSuffix(".safetensors") ? String(name.dropLast(".safetensors".count)) : name
        return output.deletingLastPathComponent().appendingPathComponent(base + ".checkpoint.safetensors")
    }

    /// SHA-256 of a training set's pixels then labels: a checkpoint resumes only on the same data.
    public static func fingerprint(of images: LabeledImages) -> String {
        var data = Data(images.pixels)
        data.append(contentsOf: images.labels)
        return data.sha256Hex
    }

    /// Writes the checkpoint atomically to `url`: the model tensors are `model`, the model as it stands
    /// (`TrainingStep.inferenceModel`: the moving average when one is kept, batch normalisation
    /// folded), so `evaluate` and `predict` accept the file.
    public func write(to url: URL, model network: Network) throws {
        var tensors = network.namedTensors
        let count = weights.count
        tensors.append(NamedTensor(name: Key.weights, shape: [count], values: weights))
        tensors.append(NamedTensor(name: Key.firstMoment, shape: [firstMoment.count], values: firstMoment))
        if !secondMoment.isEmpty {
            tensors.append(NamedTensor(name: Key.secondMoment, shape: [secondMoment.count], values: secondMoment))
        }
        if !average.isEmpty { tensors.append(NamedTensor(name: Key.average, shape: [count], values: average)) }
        var metadata = ModelMetadataKey.common(configuration: configuration)
        metadata[Key.step] = "\(step)"
        metadata[Key.dataFingerprint] = dataFingerprint
        metadata[Network.MetadataKey.architecture] = network.architecture.jsonString()
        metadata[Network.MetadataKey.formatVersion] = Network.modelFormatVersion
        metadata[ModelMetadataKey.weightsSHA256] = Network.digest(of: network.parameters)
        try SafeTensors.write(tensors: tensors, metadata: metadata, to: url)
    }

    /// Reads a checkpoint written by `write`; throws an error naming the file when it is not one, is
    /// damaged, or does not fit `parameterCount` (nil: the parameter count of its configuration's preset;
    /// the model part may be smaller, its batch normalisation folded).
    public static func read(from url: URL, parameterCount: Int? = nil) throws -> Checkpoint {
        let (tensors, metadata) = try SafeTensors.read(from: url)
        func fail(_ reason: String) -> ModelFileError { ModelFileError(path: url.path, reason: reason) }
        let byName = Dictionary(tensors.map { ($0.name, $0.values) }, uniquingKeysWith: { first, _ in first })
        guard let stepText = metadata[Key.step], let step = Int(stepText), step >= 0 else {
            throw fail("not a checkpoint (no \(Key.step) in the metadata)")
        }
        guard let json = metadata[ModelMetadataKey.trainingConfiguration],
            let configuration = try? JSONDecoder().decode(TrainingConfiguration.self, from: Data(json.utf8))
        else { throw fail("the checkpoint's training configuration is missing or damaged") }
        guard let fingerprint = metadata[Key.dataFingerprint] else { throw fail("no training data fingerprint") }
        guard
            let parameterCount = parameterCount
                ?? (try? Network(architecture: configuration.preset.architecture, seed: 0))?.parameterCount
        else { throw fail("the checkpoint's model \(configuration.model) cannot be built") }
        guard let weights = byName[Key.weights], weights.count == parameterCount,
            let firstMoment = byName[Key.firstMoment], firstMoment.count == parameterCount
        else {
            throw fail(
                "the training state (\(byName[Key.weights]?.count ?? 0) weights) does not fit a model of \(parameterCount) "
                    + "parameters; a checkpoint of an earlier release whose preset \(configuration.model) differed cannot "
                    + "be continued (--fresh starts over)")
        }
        let secondMoment = byName[Key.secondMoment] ?? []
        let average = byName[Key.average] ?? []
        guard [0, parameterCount].contains(secondMoment.count), [0, parameterCount].contains(average.count),
            (configuration.optimizer == .adam) == !secondMoment.isEmpty
        else { throw fail("the optimizer state does not fit the configuration") }
        return Checkpoint(
            step: step, configuration: configuration, dataFingerprint: fingerprint, weights: weights,
            firstMoment: firstMoment, secondMoment: secondMoment, average: average)
    }

    /// Why this checkpoint cannot continue a run of `configuration` on data with `fingerprint`, naming
    /// every setting that differs by its flag; nil when it can.
    public func mismatch(configuration other: TrainingConfiguration, dataFingerprint data: String) -> String? {
        var differences = configuration.differences(from: other)
        if dataFingerprint != data { differences.append("the training data differ (another --data folder)") }
        return differences.isEmpty ? nil : differences.joined(separator: "; ")
    }
}

extension TrainingConfiguration {
    /// Each setting that differs from `other`, as "--flag: A here, B there" (self first).
    func differences(from other: TrainingConfiguration) -> [String] {
        var result: [String] = []
        func compare<Value: Equatable>(_ flag: String, _ mine: Value, _ theirs: Value) {
            if mine != theirs { result.append("\(flag) \(mine) in the checkpoint, \(theirs) now") }
        }
        compare("--epochs", epochs, other.epochs)
        compare("--batch-size", batchSize, other.batchSize)
        compare("--learning-rate", learningRate, other.learningRate)
        compare("--optimizer", optimizer.rawValue, other.optimizer.rawValue)
        compare("--schedule", schedule.rawValue, other.schedule.rawValue)
        compare("--model", model, other.model)
        compare("--seed", seed, other.seed)
        compare("--augment", augment, other.augment)
        compare("--shift", shift, other.shift)
        compare("--rotation", rotation, other.rotation)
        compare("--scale", scale, other.scale)
        compare("--shear", shear, other.shear)
        compare("--elastic", elastic, other.elastic)
        compare("--weight-decay", weightDecay, other.weightDecay)
        compare("--average-decay", averageDecay, other.averageDecay)
        return result
    }
}
