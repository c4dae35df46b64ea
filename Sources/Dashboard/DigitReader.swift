// Reads the digit in an uploaded image: the same decoding and preprocessing as `mnist predict`, then
// the models. Decoding and preprocessing run on any thread at once; the networks answer one call at a
// time (their activation buffers are reused between calls), which for one image takes about a
// millisecond. The models can be replaced while the reader is in use (the live dashboard asks the
// weights of the step just finished).
import ConvNet
import Foundation
import MNIST
import Training

/// What the models say about one image.
public struct DigitAnswer: Sendable {
    /// The most probable digit.
    public let digit: Int
    /// The ten classes' probabilities (the ensemble's mean when there are several models).
    public let probabilities: [Float]
    /// The 28x28 input the network saw, and what preprocessing found.
    public let input: PreprocessedDigit

    /// Why the image does not look like one digit (`DigitCheck`), or nil.
    public let notADigit: String?

    /// The probability of `digit`.
    public var confidence: Float { probabilities[digit] }
}

/// Why an upload was not read.
public enum DigitReaderError: Error, Equatable, CustomStringConvertible {
    /// The bytes are not an image this program decodes, or a damaged one.
    case unreadableImage(String)
    /// The image decoded but holds no ink to read.
    case noDigit(String)
    /// No model yet (the dashboard before the first step).
    case noModel

    public var description: String {
        switch self {
        case .unreadableImage(let reason): return reason
        case .noDigit(let reason): return reason
        case .noModel: return "no model yet: training has not finished a step"
        }
    }
}

/// Decodes, preprocesses and classifies uploaded images. Safe to call from any thread: the models
/// (whose networks reuse buffers between calls) are only touched under `lock`, and a model handed to
/// `replace(with:)` is not used by its caller afterwards.
public final class DigitReader: @unchecked Sendable {
    private let lock = NSLock()
    private var ensemble: Ensemble?
    private let preprocessor = MNISTPreprocessor()
    /// Asked before each read for a newer model (called outside `lock`; nil: keep the one there is).
    private let source: @Sendable () -> Ensemble?

    /// A reader that answers with `ensemble` (nil: no model yet, until `replace(with:)`).
    public init(ensemble: Ensemble?) {
        self.ensemble = ensemble
        source = { nil }
    }

    /// A reader that asks `source` before each read for a newer model (the live dashboard's weights).
    public init(source: @escaping @Sendable () -> Ensemble?) {
        self.ensemble = nil
        self.source = source
    }

    /// Answers with `ensemble` from now on; the caller must not use it afterwards.
    public func replace(with ensemble: Ensemble) {
        lock.withLock { self.ensemble = ensemble }
    }

    /// Whether there is a model to answer with.
    public var hasModel: Bool { lock.withLock { ensemble != nil } }

    /// The digit in `bytes`, a PNG, JPEG, PGM or PPM file's contents.
    public func read(_ bytes: [UInt8]) throws(DigitReaderError) -> DigitAnswer {
        let digit: PreprocessedDigit
        let map: InkMap
        do {
            let image = try ImageFile.decode(bytes)
            do {
                map = try preprocessor.inkMap(image)
                digit = try preprocessor.frame(map, regions: Set(map.regions.map(\.label)))
            } catch {
                throw DigitReaderError.noDigit("\(error)")
            }
        } catch let error as DigitReaderError {
            throw error
        } catch {
            throw DigitReaderError.unreadableImage("\(error)")
        }
        if let newer = source() { replace(with: newer) }
        let answer = lock.withLock { () -> (probabilities: [Float], unfamiliarity: Double?)? in
            guard let ensemble else { return nil }
            let mean = ensemble.inputMean, deviation = ensemble.inputStandardDeviation
            let input = digit.pixels.map { ($0 - mean) / deviation }
            return (ensemble.probabilities(images: input), ensemble.unfamiliarity(images: input)?.first)
        }
        guard let (probabilities, unfamiliarity) = answer else { throw DigitReaderError.noModel }
        var best = 0
        for index in probabilities.indices where probabilities[index] > probabilities[best] { best = index }
        return DigitAnswer(
            digit: best, probabilities: probabilities, input: digit,
            notADigit: DigitCheck.problem(with: map, probabilities: probabilities, unfamiliarity: unfamiliarity))
    }
}
