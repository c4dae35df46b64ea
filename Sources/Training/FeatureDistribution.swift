// Where the training digits lie in what the network's last layer sees (`Network.features`): each
// class's mean and one covariance shared by the classes. An input far from every class mean, by the
// Mahalanobis distance, is unlike the digits the network learned from, however sure the network is
// of its answer (a letter, a scribble): the check `predict` adds to the calibrated confidence.
// `mnist calibrate` fits it on the training set and records it in the model file's metadata.
import Foundation

public struct FeatureDistribution: Sendable, Equatable {
    public let classes: Int
    public let featureCount: Int
    /// `[classes, featureCount]`.
    public let means: [Float]
    /// The covariance's lower-triangular Cholesky factor L (covariance = L Lᵀ), row by row, the
    /// `featureCount * (featureCount + 1) / 2` entries on and below the diagonal.
    public let cholesky: [Float]
    /// Inputs farther than this (squared distance) from every class mean are unlike the training
    /// digits; `calibrate` sets it so that 1% of held-out test digits are.
    public var threshold: Double

    /// Fits the class means and the shared covariance of `features` (`[N, featureCount]`) with their
    /// `labels`, the covariance shrunk towards its mean variance by `shrinkage` (so that it can be
    /// inverted when some features never vary, as ReLU features can). Throws when a class has no
    /// example.
    public static func fit(
        features: [Float], labels: [UInt8], featureCount: Int, classes: Int, shrinkage: Double = 0.01
    ) throws -> FeatureDistribution {
        let count = labels.count, width = featureCount
        precondition(features.count == count * width, "one row of features per label")
        var sums = [Double](repeating: 0, count: classes * width), counts = [Int](repeating: 0, count: classes)
        for sample in 0..<count {
            let label = Int(labels[sample])
            guard label < classes else { throw FeatureDistributionError.labelOutOfRange(label) }
            counts[label] += 1
            for feature in 0..<width { sums[label * width + feature] += Double(features[sample * width + feature]) }
        }
        if let empty = counts.firstIndex(of: 0) { throw FeatureDistributionError.emptyClass(empty) }
        let means = sums.indices.map { sums[$0] / Double(counts[$0 / width]) }
        // The covariance of the features around their own class's mean, in Double.
        var covariance = [Double](repeating: 0, count: width * width)
        var centred = [Double](repeating: 0, count: width)
        for sample in 0..<count {
            let label = Int(labels[sample])
            for feature in 0..<width {
                centred[feature] = Double(features[sample * width + feature]) - means[label * width + feature]
            }
            for row in 0..<width where centred[row] != 0 {
                let value = centred[row]
                for column in 0...row { covariance[row * width + column] += value * centred[column] }
            }
        }
        let meanVariance = (0..<width).map { covariance[$0 * width + $0] }.reduce(0, +) / Double(count * width)
        for row in 0..<width {
            for column in 0...row { covariance[row * width + column] /= Double(count) }
            covariance[row * width + row] += shrinkage * max(meanVariance, 1e-12)
        }
        // Cholesky: covariance = L Lᵀ, from the lower triangle.
        var factor = [Double](repeating: 0, count: width * width)
        for row in 0..<width {
            for column in 0...row {
                var sum = covariance[row * width + column]
                for k in 0..<column { sum -= factor[row * width + k] * factor[column * width + k] }
                if row == column {
                    guard sum > 0 else { throw FeatureDistributionError.notPositiveDefinite }
                    factor[row * width + row] = sum.squareRoot()
                } else {
                    factor[row * width + column] = sum / factor[column * width + column]
                }
            }
        }
        let packed = (0..<width).flatMap { row in (0...row).map { Float(factor[row * width + $0]) } }
        return FeatureDistribution(
            classes: classes, featureCount: width, means: means.map(Float.init), cholesky: packed, threshold: 0)
    }

    public init(classes: Int, featureCount: Int, means: [Float], cholesky: [Float], threshold: Double) {
        precondition(means.count == classes * featureCount && cholesky.count == featureCount * (featureCount + 1) / 2)
        self.classes = classes
        self.featureCount = featureCount
        self.means = means
        self.cholesky = cholesky
        self.threshold = threshold
    }

    /// The squared Mahalanobis distance from `features` (one input's) to the nearest class mean.
    public func distance(_ features: ArraySlice<Float>) -> Double {
        precondition(features.count == featureCount, "one input's features")
        let width = featureCount, base = features.startIndex
        var solved = [Double](repeating: 0, count: width)
        var nearest = Double.infinity
        for label in 0..<classes {
            // Solve L y = x - mean by forward substitution: the distance is |y|².
            var squared = 0.0, row = 0
            for feature in 0..<width {
                var sum = Double(features[base + feature]) - Double(means[label * width + feature])
                for k in 0..<feature { sum -= Double(cholesky[row + k]) * solved[k] }
                solved[feature] = sum / Double(cholesky[row + feature])
                squared += solved[feature] * solved[feature]
                row += feature + 1
            }
            nearest = min(nearest, squared)
        }
        return nearest
    }

    /// The distance of each of `features`'s rows (`[N, featureCount]`).
    public func distances(_ features: [Float]) -> [Double] {
        (0..<(features.count / max(1, featureCount))).map {
            distance(features[($0 * featureCount)..<(($0 + 1) * featureCount)])
        }
    }

    /// The metadata entries that record it.
    public var metadata: [String: String] {
        [
            ModelMetadataKey.featureMeans: Self.encode(means),
            ModelMetadataKey.featureCholesky: Self.encode(cholesky),
            ModelMetadataKey.featureThreshold: "\(threshold)",
        ]
    }

    /// The distribution a model file records for a network of `classes` classes and `featureCount`
    /// features, nil when it records none; throws when what it records is damaged or does not fit.
    public init?(metadata: [String: String], classes: Int, featureCount: Int) throws {
        guard let meansText = metadata[ModelMetadataKey.featureMeans] else { return nil }
        guard let means = Self.decode(meansText), means.count == classes * featureCount,
            let cholesky = metadata[ModelMetadataKey.featureCholesky].flatMap(Self.decode),
            cholesky.count == featureCount * (featureCount + 1) / 2,
            let threshold = metadata[ModelMetadataKey.featureThreshold].flatMap(Double.init), threshold > 0,
            threshold.isFinite, means.allSatisfy(\.isFinite), cholesky.allSatisfy(\.isFinite),
            (0..<featureCount).allSatisfy({ cholesky[$0 * ($0 + 1) / 2 + $0] > 0 })
        else { throw FeatureDistributionError.damaged }
        self.init(classes: classes, featureCount: featureCount, means: means, cholesky: cholesky, threshold: threshold)
    }

    static func encode(_ values: [Float]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }

    static func decode(_ text: String) -> [Float]? {
        guard let data = Data(base64Encoded: text), data.count % 4 == 0 else { return nil }
        let bytes = [UInt8](data)
        return stride(from: 0, to: bytes.count, by: 4).map { offset in
            Float(
                bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                    | UInt32(bytes[offset + 3]) << 24)
        }
    }
}

public enum FeatureDistributionError: Error, CustomStringConvertible {
    case labelOutOfRange(Int)
    case emptyClass(Int)
    case notPositiveDefinite
    case damaged

    public var description: String {
        switch self {
        case .labelOutOfRange(let label): "label \(label) is not one of the network's classes"
        case .emptyClass(let label): "no training example of class \(label)"
        case .notPositiveDefinite: "the features' covariance cannot be inverted"
        case .damaged:
            "its recorded feature distribution is damaged or does not fit the network; run mnist calibrate again"
        }
    }
}
