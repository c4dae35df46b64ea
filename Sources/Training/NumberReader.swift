// Reads a handwritten number: the digits MNIST's segmentation groups out of the ink, each group read
// as one, two or three touching digits, whichever the network reads best. Geometry alone cannot tell
// a wide 0 from two touching 1s, or a 36 from an 8; how sure the network is of each piece can.
import Foundation
import MNIST

/// One digit of a number as read: its input, its box in the source and its class probabilities.
public struct ReadDigit: Sendable {
    public var input: PreprocessedDigit
    public var box: PixelRectangle
    public var probabilities: [Float]
    public var digit: Int { probabilities.indices.max { probabilities[$0] < probabilities[$1] } ?? 0 }
}

public struct NumberReader {
    public let ensemble: Ensemble
    public let preprocessor: MNISTPreprocessor
    /// A group up to this wide (times the number's height) is one digit by its shape.
    public var widest = 1.05
    /// The width (times the number's height) of a digit in a group of touching digits.
    public var typical = 0.72
    /// Reading a group as one digit more or fewer than its width suggests costs this much
    /// log-probability: the network must read the pieces clearly better to overrule the shape.
    public var departureCost: Float = 1

    public init(ensemble: Ensemble, preprocessor: MNISTPreprocessor = MNISTPreprocessor()) {
        self.ensemble = ensemble
        self.preprocessor = preprocessor
    }

    /// The digits of the number in `image`, left to right. Throws `PreprocessingError.blankImage`
    /// when there is no ink.
    public func read(_ image: RasterImage) throws -> [ReadDigit] {
        let map = try preprocessor.inkMap(image)
        var digits: [ReadDigit] = []
        let groups = NumberSegmentation.segment(map)
        let height = groups.map(\.box.height).max() ?? 1
        for group in groups {
            // How many digits the group's width suggests: one up to `widest` of the number's height,
            // else one per `typical` width; the network's reading may move that by one.
            let width = Double(group.box.width) / Double(height)
            let suggested = width <= widest ? 1 : max(2, Int((width / typical).rounded()))
            var best: (score: Float, digits: [ReadDigit])?
            for count in max(1, suggested - 1)...(suggested + 1) {
                let pieces = NumberSegmentation.split(map, group, into: count)
                guard pieces.count == count else { continue }
                guard
                    let inputs = try? pieces.map({
                        try preprocessor.frame(map, regions: $0.regions, columns: $0.columns)
                    })
                else { continue }
                let read = classify(inputs, boxes: inputs.map(\.report.cropBox))
                let score =
                    read.map { log(max($0.probabilities[$0.digit], 1e-12)) }.reduce(0, +)
                    - (count == suggested ? 0 : departureCost)
                if score > best?.score ?? -.infinity { best = (score, read) }
            }
            digits += best?.digits ?? []
        }
        return digits
    }

    /// The network's reading of each input.
    func classify(_ inputs: [PreprocessedDigit], boxes: [PixelRectangle]) -> [ReadDigit] {
        let mean = ensemble.inputMean, deviation = ensemble.inputStandardDeviation
        let probabilities = ensemble.probabilities(images: inputs.flatMap { $0.pixels.map { ($0 - mean) / deviation } })
        let classes = ensemble.classCount
        return inputs.indices.map { index in
            ReadDigit(
                input: inputs[index], box: boxes[index],
                probabilities: Array(probabilities[(index * classes)..<((index + 1) * classes)]))
        }
    }
}

/// Whether what `predict` was given looks like one digit at all. Blank images never get here (the
/// preprocessor refuses them); the rest are judged by their ink's shape and the network's confidence.
public enum DigitCheck {
    /// Below this calibrated confidence the answer is not taken for a digit. On test digits photographed
    /// by the tests none of 300 fell below it; most letters, scribbles and paper textures do (README).
    public static let minimumConfidence: Float = 0.9

    /// Why the image is not one digit, or nil when it is: several digit-sized groups of ink side by side,
    /// or a confidence below `minimumConfidence` (with the model's temperature applied).
    public static func problem(with map: InkMap, probabilities: [Float]) -> String? {
        if map.regions.count > NumberSegmentation.maximumRegions {
            return "it has \(map.regions.count) separate marks, far more than a digit"
        }
        let groups = NumberSegmentation.segment(map)
        let tallest = groups.map(\.box.height).max() ?? 0
        let digitSized = groups.filter { Double($0.box.height) >= 0.6 * Double(tallest) }.count
        if digitSized >= 2 {
            return "it looks like \(digitSized) digits side by side; --number reads a number"
        }
        let confidence = probabilities.max() ?? 0
        if confidence < minimumConfidence {
            return String(
                format: "the network is only %.1f%% sure of any digit; it may not be looking at one",
                confidence * 100)
        }
        return nil
    }
}
