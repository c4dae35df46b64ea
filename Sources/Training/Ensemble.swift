// Several trained models that answer together: each image's class probabilities are the mean of the
// models' (a vote that keeps each model's confidence). The models may have different architectures;
// they must read the same images the same way and name the same classes.
import ConvNet
import Foundation

/// Models whose class probabilities are averaged.
public struct Ensemble {
    public let networks: [Network]
    /// Each model's file, in order (for messages).
    public let paths: [String]
    /// The input normalisation all the models were trained with (from their metadata).
    public let inputMean: Float
    public let inputStandardDeviation: Float
    /// The temperature its probabilities are given at (`Calibration`): from the files' metadata
    /// (`mnist calibrate`; the mean when they differ), 1 when none was fitted.
    public var temperature: Float
    /// Each model's feature distribution (`mnist calibrate`), nil for a model that records none.
    public let distributions: [FeatureDistribution?]

    public var classCount: Int { networks[0].classCount }
    public var inputCount: Int { networks[0].inputCount }

    /// Loads and checks each file (`Network.loadChecked`); throws `ModelFileError` naming the file that
    /// does not fit the first: another input size, class count or input normalisation.
    public init(loading urls: [URL]) throws {
        precondition(!urls.isEmpty, "an ensemble needs a model")
        var networks: [Network] = []
        var normalizations: [(Float, Float)] = []
        var temperatures: [Float] = []
        var distributions: [FeatureDistribution?] = []
        for url in urls {
            let (network, metadata) = try Network.loadChecked(from: url)
            do {
                distributions.append(
                    try FeatureDistribution(
                        metadata: metadata, classes: network.classCount, featureCount: network.featureCount))
            } catch {
                throw ModelFileError(path: url.path, reason: "\(error)")
            }
            let temperature = metadata[ModelMetadataKey.temperature].flatMap(Float.init) ?? 1
            guard temperature.isFinite, temperature > 0 else {
                throw ModelFileError(
                    path: url.path,
                    reason: "its temperature \(temperature) is not a positive number: calibrate it again")
            }
            temperatures.append(temperature)
            let mean = metadata[ModelMetadataKey.inputMean].flatMap(Float.init) ?? InputNormalization.mean
            let deviation =
                metadata[ModelMetadataKey.inputStandardDeviation].flatMap(Float.init)
                ?? InputNormalization.standardDeviation
            if let first = networks.first {
                let what =
                    network.inputCount != first.inputCount
                    ? "it reads images of \(network.inputCount) pixels, \(urls[0].path) of \(first.inputCount)"
                    : network.classCount != first.classCount
                        ? "it has \(network.classCount) classes, \(urls[0].path) has \(first.classCount)"
                        : (mean, deviation) != normalizations[0]
                            ? "it normalises its input with mean \(mean) and deviation \(deviation), "
                                + "\(urls[0].path) with \(normalizations[0].0) and \(normalizations[0].1)" : nil
                if let what {
                    throw ModelFileError(
                        path: url.path, reason: "cannot join an ensemble with \(urls[0].path): \(what)")
                }
            }
            networks.append(network)
            normalizations.append((mean, deviation))
        }
        self.networks = networks
        self.distributions = distributions
        self.paths = urls.map(\.path)
        temperature = temperatures.reduce(0, +) / Float(temperatures.count)
        (inputMean, inputStandardDeviation) = normalizations[0]
    }

    /// One network in memory (the dashboard's model of the moment), with the input normalisation of
    /// training (`InputNormalization`).
    public init(network: Network, name: String = "current weights") {
        networks = [network]
        distributions = [nil]
        paths = [name]
        inputMean = InputNormalization.mean
        inputStandardDeviation = InputNormalization.standardDeviation
        temperature = 1
    }

    /// How unlike the training digits each of the normalised `images` `[N, C, H, W]` is: each model's
    /// feature distance over its threshold, averaged over the models that record a distribution
    /// (`FeatureDistribution`); above 1 is unlike. Nil when no model records one.
    public func unfamiliarity(images: [Float]) -> [Double]? {
        let recorded = zip(networks, distributions).compactMap { network, distribution in
            distribution.map { (network, $0) }
        }
        guard !recorded.isEmpty else { return nil }
        var sum = [Double](repeating: 0, count: images.count / max(1, inputCount))
        for (network, distribution) in recorded {
            for (index, distance) in distribution.distances(network.features(images: images)).enumerated() {
                sum[index] += distance / distribution.threshold
            }
        }
        return sum.map { $0 / Double(recorded.count) }
    }

    /// The mean of the models' class probabilities for normalised `images` `[N, C, H, W]`: `[N, classes]`.
    /// Summed in Double in model order, so the result does not depend on anything but the models.
    /// At `temperature`.
    public func probabilities(images: [Float]) -> [Float] {
        Calibration.tempered(untempered(images: images), classes: classCount, temperature: temperature)
    }

    func untempered(images: [Float]) -> [Float] {
        guard networks.count > 1 else { return networks[0].probabilities(images: images) }
        var sum: [Double] = []
        for network in networks {
            let each = network.probabilities(images: images)
            if sum.isEmpty { sum = [Double](repeating: 0, count: each.count) }
            for index in each.indices { sum[index] += Double(each[index]) }
        }
        let count = Double(networks.count)
        return sum.map { Float($0 / count) }
    }
}
