// The feature distribution behind predict's "unlike the training digits": its fit and distance against
// a plain reference (the covariance inverted by Gauss-Jordan elimination), and its record in metadata.
import Foundation
import TestSupport
import XCTest

@testable import Training

final class FeatureDistributionTests: XCTestCase {
    /// Three classes of correlated 4-feature points around different means.
    private func sample(count: Int) -> (features: [Float], labels: [UInt8]) {
        var generator = TestGenerator(seed: 5)
        let means: [[Float]] = [[0, 0, 0, 0], [3, -1, 2, 0.5], [-2, 4, 1, -3]]
        var features: [Float] = [], labels: [UInt8] = []
        for n in 0..<count {
            let label = n % 3
            let noise = generator.uniformArray(4, -1, 1)
            // Correlated: the second feature follows the first, the fourth is nearly constant.
            let point = [noise[0], noise[0] * 0.8 + noise[1] * 0.3, noise[2] * 2, noise[3] * 0.05]
            features += zip(means[label], point).map { $0 + $1 }
            labels.append(UInt8(label))
        }
        return (features, labels)
    }

    func testDistanceIsTheMahalanobisDistanceToTheNearestClassMean() throws {
        let (features, labels) = sample(count: 600)
        let distribution = try FeatureDistribution.fit(
            features: features, labels: labels, featureCount: 4, classes: 3, shrinkage: 0.01)
        // The reference: class means, the pooled covariance plus shrinkage, inverted by Gauss-Jordan.
        var means = [[Double]](repeating: [0, 0, 0, 0], count: 3), counts = [0.0, 0, 0]
        for n in 0..<600 {
            counts[Int(labels[n])] += 1
            for f in 0..<4 { means[Int(labels[n])][f] += Double(features[n * 4 + f]) }
        }
        for c in 0..<3 { for f in 0..<4 { means[c][f] /= counts[c] } }
        for c in 0..<3 {
            for f in 0..<4 { XCTAssertEqual(Double(distribution.means[c * 4 + f]), means[c][f], accuracy: 1e-5) }
        }
        var covariance = [[Double]](repeating: [0, 0, 0, 0], count: 4)
        for n in 0..<600 {
            let centred = (0..<4).map { Double(features[n * 4 + $0]) - means[Int(labels[n])][$0] }
            for a in 0..<4 { for b in 0..<4 { covariance[a][b] += centred[a] * centred[b] / 600 } }
        }
        let meanVariance = (0..<4).map { covariance[$0][$0] }.reduce(0, +) / 4
        for a in 0..<4 { covariance[a][a] += 0.01 * meanVariance }
        var augmented = (0..<4).map { row in covariance[row] + (0..<4).map { $0 == row ? 1.0 : 0 } }
        for column in 0..<4 {
            let pivot = try XCTUnwrap((column..<4).max { abs(augmented[$0][column]) < abs(augmented[$1][column]) })
            augmented.swapAt(column, pivot)
            let scale = augmented[column][column]
            augmented[column] = augmented[column].map { $0 / scale }
            for row in 0..<4 where row != column {
                let factor = augmented[row][column]
                augmented[row] = zip(augmented[row], augmented[column]).map { $0 - factor * $1 }
            }
        }
        let inverse = augmented.map { Array($0[4...]) }
        func reference(_ point: [Double]) -> Double {
            var nearest = Double.infinity
            for c in 0..<3 {
                let d: [Double] = (0..<4).map { point[$0] - means[c][$0] }
                var squared = 0.0
                for a in 0..<4 { for b in 0..<4 { squared += d[a] * inverse[a][b] * d[b] } }
                nearest = min(nearest, squared)
            }
            return nearest
        }
        var generator = TestGenerator(seed: 8)
        for _ in 0..<50 {
            let point = generator.uniformArray(4, -5, 5)
            let expected = reference(point.map(Double.init))
            XCTAssertEqual(distribution.distance(point[...]), expected, accuracy: 1e-4 * max(1, expected))
        }
        // The nearly constant feature dominates: a step along it is far, the same step along a free one is not.
        XCTAssertGreaterThan(
            distribution.distance([3, -1, 2, 1.5][...]), 50 * distribution.distance([3, -1, 3, 0.5][...]))
        XCTAssertEqual(distribution.distances(Array(features[0..<8])).count, 2)
    }

    func testTheMetadataRecordRoundTripsAndADamagedOneIsRefused() throws {
        let (features, labels) = sample(count: 300)
        var distribution = try FeatureDistribution.fit(features: features, labels: labels, featureCount: 4, classes: 3)
        distribution.threshold = 12.5
        let metadata = distribution.metadata
        XCTAssertEqual(try FeatureDistribution(metadata: metadata, classes: 3, featureCount: 4), distribution)
        XCTAssertNil(try FeatureDistribution(metadata: [:], classes: 3, featureCount: 4))
        // Another network's shape, a cut record, a bad threshold and a factor that is not one are refused.
        XCTAssertThrowsError(try FeatureDistribution(metadata: metadata, classes: 3, featureCount: 5))
        var cut = metadata
        cut[ModelMetadataKey.featureCholesky] = String(
            metadata[ModelMetadataKey.featureCholesky, default: ""].dropLast(8))
        XCTAssertThrowsError(try FeatureDistribution(metadata: cut, classes: 3, featureCount: 4))
        var threshold = metadata
        threshold[ModelMetadataKey.featureThreshold] = "-1"
        XCTAssertThrowsError(try FeatureDistribution(metadata: threshold, classes: 3, featureCount: 4))
        var singular = metadata
        singular[ModelMetadataKey.featureCholesky] = FeatureDistribution.encode([Float](repeating: 0, count: 10))
        XCTAssertThrowsError(try FeatureDistribution(metadata: singular, classes: 3, featureCount: 4)) { error in
            XCTAssertTrue("\(error)".contains("mnist calibrate"), "\(error)")
        }
        // A class without examples cannot be fitted.
        XCTAssertThrowsError(
            try FeatureDistribution.fit(features: features, labels: labels, featureCount: 4, classes: 4))
    }
}
