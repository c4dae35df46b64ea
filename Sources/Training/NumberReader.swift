// Reads a handwritten number by recognising it: the ink's groups (MNIST's `NumberSegmentation`) and
// candidate cuts through them bound every piece that could be a digit; the network reads each, and
// the reading of the whole number that scores best wins. Geometry alone cannot tell a wide 0 from two
// touching 1s, or a 36 from an 8; how sure the network is of each piece, with what the piece's cuts,
// width and shape cost, mostly can.
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
    /// A digit is at most this wide, times the number's height (MNIST's digits: 1.0).
    public var widest = 1.1
    /// Cuts start at least this far apart, times the number's height (a 1 is about 0.2 wide), and a
    /// group gets up to `cutsPerHeight` of them per height of its width.
    public var spacing = 0.12
    public var cutsPerHeight = 6.0
    /// Cuts may wander this far (times the number's height) from where they start.
    public var reach = 0.1

    /// The weights of a reading's score, in log-probability. They were chosen on 720 numbers the
    /// tests' renderer made (other digits and seeds than the tests use), by a grid search.
    public struct Weights: Sendable {
        /// Each digit read costs this much: slightly negative, so that two digits the network reads
        /// well are not merged into one it reads about as well.
        public var digit: Float = -0.25
        /// A cut costs this much per pixel of ink it crosses, times the number's height.
        public var cut: Float = 2
        /// A digit narrower or wider than MNIST's digits of its class costs this times `widthPenalty`.
        public var width: Float = 0.5
        /// A digit made of several groups of ink (strokes that came apart) costs this per group joined.
        public var join: Float = 0.5
        /// A 1 costs this much per unit of `curvature` above `straightest`: a sliver of a 0 or a 2 is
        /// read as a confident 1, but it is bent, and a 1 is straight.
        public var bentOne: Float = 5
        public var straightest: Float = 0.15
        /// A digit shorter than `tallness` times the lowest height of MNIST's digits of its class
        /// (`lowest`) costs this per unit of the number's height short: a 7's bar cut from its stem is
        /// no 1, nor a 0's lower curve a 6. The slack allows for slanted and unevenly sized writing.
        public var short: Float = 4
        public var tallness = 0.8
    }
    public var weights = Weights()

    public init(ensemble: Ensemble, preprocessor: MNISTPreprocessor = MNISTPreprocessor()) {
        self.ensemble = ensemble
        self.preprocessor = preprocessor
    }

    /// Where a digit of the number can begin or end: before or after a group of ink (`next` is the
    /// group after it, `previous` the one before), or at a cut through a group (both that group).
    struct Boundary {
        var next: Int
        var previous: Int
        var cut: CutPath?
    }

    /// A digit's candidate: the boundaries it lies between and the pieces of ink between them.
    struct Piece {
        var from: Int
        var to: Int
        var parts: [DigitSegment]
    }

    /// The digits of the number in `image`, left to right. Throws `PreprocessingError.blankImage`
    /// when there is no ink.
    ///
    /// Every way of reading the number as digits side by side is scored, and the best wins (a shortest
    /// path over the boundaries): a digit can be part of a group of touching digits, a whole group, or
    /// several groups (a digit whose strokes came apart), at most `widest` wide. Its score is how sure
    /// the network is of it, less what it costs (`Weights`).
    public func read(_ image: RasterImage) throws -> [ReadDigit] { best(try lattice(image)) }

    /// Every candidate digit of a number with the network's reading of it: all the choice of the best
    /// reading needs, whatever the weights.
    struct Lattice {
        var boundaries: [Boundary]
        var pieces: [Piece]
        var read: [ReadDigit]
        /// The number's height: its tallest group's, in source pixels.
        var height: Double
    }

    /// The candidates of the number in `image` (`candidates`) that could be framed, read by the network.
    func lattice(_ image: RasterImage) throws -> Lattice {
        let map = try preprocessor.inkMap(image)
        let groups = NumberSegmentation.segment(map)
        guard let tallest = groups.map(\.box.height).max() else {
            return Lattice(boundaries: [Boundary(next: 0, previous: -1, cut: nil)], pieces: [], read: [], height: 1)
        }
        let height = Double(tallest)
        var boundaries = [Boundary(next: 0, previous: -1, cut: nil)]
        for (index, group) in groups.enumerated() {
            let limit = max(2, Int((cutsPerHeight * Double(group.box.width) / height).rounded(.up)))
            for cut in NumberSegmentation.cuts(
                map, group, spacing: Int(spacing * height), reach: Int(reach * height), limit: limit)
            {
                boundaries.append(Boundary(next: index, previous: index, cut: cut))
            }
            boundaries.append(Boundary(next: index + 1, previous: index, cut: nil))
        }
        var pieces: [Piece] = [], inputs: [PreprocessedDigit] = []
        for piece in candidates(groups, boundaries, height: height) {
            if let input = try? preprocessor.frame(map, piece.parts) {
                pieces.append(piece)
                inputs.append(input)
            }
        }
        return Lattice(
            boundaries: boundaries, pieces: pieces, read: classify(inputs, boxes: inputs.map(\.report.cropBox)),
            height: height)
    }

    /// The best reading of the lattice's number: the digits whose scores sum highest, over a path
    /// from its first boundary to its last.
    func best(_ lattice: Lattice) -> [ReadDigit] {
        let boundaries = lattice.boundaries, pieces = lattice.pieces
        // best[b]: the best score of reading the number up to boundary b, and the last digit's index.
        var best = [(score: Float, digit: Int)](repeating: (-.infinity, -1), count: boundaries.count)
        best[0] = (0, -1)
        for index in pieces.indices.sorted(by: { pieces[$0].to < pieces[$1].to }) {
            let piece = pieces[index]
            guard best[piece.from].score > -.infinity else { continue }
            let score =
                best[piece.from].score
                + self.score(lattice.read[index], piece, cut: boundaries[piece.to].cut, height: lattice.height)
            if score > best[piece.to].score { best[piece.to] = (score, index) }
        }
        var digits: [ReadDigit] = []
        var boundary = boundaries.count - 1
        while boundary > 0, best[boundary].digit >= 0 {
            digits.append(lattice.read[best[boundary].digit])
            boundary = pieces[best[boundary].digit].from
        }
        return digits.reversed()
    }

    /// Every piece between two boundaries that could be one digit: at most `widest` wide, or one whole
    /// group whatever its width (so that no ink goes unread).
    func candidates(_ groups: [DigitSegment], _ boundaries: [Boundary], height: Double) -> [Piece] {
        var pieces: [Piece] = []
        for from in boundaries.indices {
            for to in boundaries.indices where to > from {
                let first = boundaries[from].next, last = boundaries[to].previous
                guard first <= last else { continue }
                let parts = (first...last).map { index in
                    var part = groups[index]
                    part.left = index == first ? boundaries[from].cut : nil
                    part.right = index == last ? boundaries[to].cut : nil
                    let lower = part.left?.columns.min() ?? part.box.x
                    let upper = part.right?.columns.max() ?? (part.box.x + part.box.width)
                    part.columns = lower..<max(lower, upper)
                    return part
                }
                let whole = first == last && boundaries[from].cut == nil && boundaries[to].cut == nil
                let span =
                    (parts.map(\.columns.upperBound).max() ?? 0) - (parts.map(\.columns.lowerBound).min() ?? 0)
                if whole || Double(span) <= widest * height { pieces.append(Piece(from: from, to: to, parts: parts)) }
            }
        }
        return pieces
    }

    /// A digit's score: the log-probability of the network's reading, less its costs (`Weights`).
    /// `cut` is the cut that ends it, if any.
    func score(_ digit: ReadDigit, _ piece: Piece, cut: CutPath?, height: Double) -> Float {
        var score = log(max(digit.probabilities[digit.digit], 1e-12)) - weights.digit
        score -= weights.cut * Float(cut?.inkCrossed ?? 0) / Float(height)
        score -= weights.width * Self.widthPenalty(Double(digit.box.width) / height, digit: digit.digit)
        score -= weights.join * Float(piece.parts.count - 1)
        if digit.digit == 1 {
            score -=
                weights.bentOne
                * max(0, Self.curvature(digit.input.pixels, side: digit.input.side) - weights.straightest)
        }
        score -=
            weights.short
            * Self.shortfall(Double(digit.box.height) / height, digit: digit.digit, tallness: weights.tallness)
        return score
    }

    /// The narrowest 1% of MNIST's training digits of each class are this wide, times their height
    /// (a 1 can be a bare stroke; a 0 or a 2 is rarely narrower than 0.6).
    static let narrowest: [Double] = [0.6, 0.2, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4]

    /// The shortest 1% of MNIST's training digits of each class are this tall, times the tallest (a 2 or a 5
    /// may be wide and flat; a 1 or a 9 is always drawn full height).
    static let lowest: [Double] = [0.75, 1, 0.6, 0.8, 0.8, 0.6, 0.9, 0.8, 0.8, 1]

    /// How much shorter a digit of this height (times the number's height) is than `tallness` times the
    /// lowest of MNIST's digits of its class: 0 for most digits, more for slivers.
    static func shortfall(_ height: Double, digit: Int, tallness: Double) -> Float {
        Float(max(0, tallness * (digit < lowest.count ? lowest[digit] : 0) - height))
    }

    /// How implausible a digit of this width (times the number's height) is: 0 within MNIST's range
    /// for the class, growing with the square of the distance outside it (in tenths of the height).
    static func widthPenalty(_ width: Double, digit: Int) -> Float {
        let low = digit < narrowest.count ? narrowest[digit] : 0
        let outside = max(0, low - width) + max(0, width - 1.05)
        return Float(outside * outside * 100 / 2)
    }

    /// How far a digit's ink is from a straight line: the spread of its ink across its main axis over
    /// the spread along it (the square root of the ratio of its second moments): 0 for a straight
    /// stroke, 1 for a round blob.
    static func curvature(_ pixels: [Float], side: Int) -> Float {
        var mass: Float = 0, meanX: Float = 0, meanY: Float = 0
        for y in 0..<side {
            for x in 0..<side {
                let value = pixels[y * side + x]
                mass += value
                meanX += value * Float(x)
                meanY += value * Float(y)
            }
        }
        guard mass > 0 else { return 1 }
        meanX /= mass
        meanY /= mass
        var xx: Float = 0, yy: Float = 0, xy: Float = 0
        for y in 0..<side {
            for x in 0..<side {
                let value = pixels[y * side + x], dx = Float(x) - meanX, dy = Float(y) - meanY
                xx += value * dx * dx
                yy += value * dy * dy
                xy += value * dx * dy
            }
        }
        let half = (xx + yy) / 2, spread = ((xx - yy) * (xx - yy) / 4 + xy * xy).squareRoot()
        let major = half + spread, minor = max(0, half - spread)
        return major > 0 ? (minor / major).squareRoot() : 1
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
    /// an input unlike the training digits to the network (`unfamiliarity` above 1, when the model
    /// records its feature distribution: `Ensemble.unfamiliarity`), or a confidence below
    /// `minimumConfidence` (with the model's temperature applied).
    public static func problem(with map: InkMap, probabilities: [Float], unfamiliarity: Double? = nil) -> String? {
        if map.regions.count > NumberSegmentation.maximumRegions {
            return "it has \(map.regions.count) separate marks, far more than a digit"
        }
        let groups = NumberSegmentation.segment(map)
        let tallest = groups.map(\.box.height).max() ?? 0
        let digitSized = groups.filter { Double($0.box.height) >= 0.6 * Double(tallest) }.count
        if digitSized >= 2 {
            return "it looks like \(digitSized) digits side by side; --number reads a number"
        }
        if let unfamiliarity, unfamiliarity > 1 {
            return String(
                format: "it is unlike the digits the network learned from (%.1fx the distance that only 1%% of "
                    + "test digits exceed)", unfamiliarity)
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
