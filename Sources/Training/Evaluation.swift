// Measuring a trained network on a labelled image set: accuracy, per-class precision and recall,
// and the confusion matrix. Inference only; nothing here changes the network.
import ConvNet
import Foundation
import MNIST

/// How a network does on a labelled set.
public struct Evaluation: Sendable, Equatable, Codable {
    /// Images evaluated.
    public let count: Int
    /// `confusion[true][predicted]`: a 10x10 count matrix, rows true class, columns predicted.
    public let confusion: [[Int]]
    /// Mean cross-entropy loss (natural log).
    public let meanLoss: Double
    /// The first `mistakeLimit` misclassified images, in the set's order (for a gallery).
    public let mistakes: [Mistake]

    /// An image the network got wrong.
    public struct Mistake: Sendable, Equatable, Codable {
        /// Its index in the evaluated set.
        public let index: Int
        public let label: Int
        public let predicted: Int
        /// The probability given to `predicted`.
        public let confidence: Float
    }

    /// How many mistakes are kept.
    public static let mistakeLimit = 100

    /// Correctly classified fraction, in [0, 1].
    public var accuracy: Double {
        count == 0 ? 0 : Double(confusion.indices.reduce(0) { $0 + confusion[$1][$1] }) / Double(count)
    }

    /// Per class: correct predictions of the class / all predictions of the class (0 if none).
    public var precision: [Double] {
        confusion.indices.map { k in
            let predicted = confusion.reduce(0) { $0 + $1[k] }
            return predicted == 0 ? 0 : Double(confusion[k][k]) / Double(predicted)
        }
    }

    /// Per class: correct predictions of the class / images of the class (0 if none).
    public var recall: [Double] {
        confusion.indices.map { k in
            let actual = confusion[k].reduce(0, +)
            return actual == 0 ? 0 : Double(confusion[k][k]) / Double(actual)
        }
    }

    /// Evaluates `network` on `images` (pixels normalised with `InputNormalization`), in batches
    /// of `batchSize`.
    public init(network: Network, images: LabeledImages, batchSize: Int = 1000) {
        self.init(
            classes: network.classCount, images: images, batchSize: batchSize, probabilities: network.probabilities)
    }

    /// Evaluates an ensemble: its mean probabilities decide (see `Ensemble`).
    public init(ensemble: Ensemble, images: LabeledImages, batchSize: Int = 1000) {
        self.init(
            classes: ensemble.classCount, images: images, batchSize: batchSize, probabilities: ensemble.probabilities)
    }

    /// Evaluates whatever gives `[N, classes]` probabilities for normalised images.
    init(classes: Int, images: LabeledImages, batchSize: Int, probabilities probabilitiesOf: ([Float]) -> [Float]) {
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        var lossSum = 0.0
        var mistakes: [Mistake] = []
        let perImage = images.pixelsPerImage
        var first = 0
        while first < images.count {
            let count = min(batchSize, images.count - first)
            let inputs = InputNormalization.normalized(
                Array(images.pixels[(first * perImage)..<((first + count) * perImage)]))
            let probabilities = probabilitiesOf(inputs)
            for n in 0..<count {
                let row = probabilities[(n * classes)..<((n + 1) * classes)]
                var best = row.startIndex
                for index in row.indices where row[index] > row[best] { best = index }
                let label = Int(images.labels[first + n])
                if label < classes {
                    confusion[label][best - row.startIndex] += 1
                    if best - row.startIndex != label, mistakes.count < Self.mistakeLimit {
                        mistakes.append(
                            Mistake(
                                index: first + n, label: label, predicted: best - row.startIndex,
                                confidence: row[best]))
                    }
                    lossSum -= log(Double(max(row[row.startIndex + label], 1e-30)))
                }
            }
            first += count
        }
        self.count = images.count
        self.confusion = confusion
        self.meanLoss = images.count == 0 ? 0 : lossSum / Double(images.count)
        self.mistakes = mistakes
    }
}
