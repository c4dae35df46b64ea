// `mnist predict`: the digit in the user's own images, brought into MNIST's form first.
// Decoding and preprocessing live in MNIST (ImageFile, MNISTPreprocessor); this file only runs them,
// feeds the network in one batch, and prints. A bad file is reported and the others still predicted.
import ArgumentParser
import ConvNet
import Foundation
import MNIST
import Training

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Classify the digit in each image (PNG, JPEG, binary PGM/PPM; any size, colours or background).",
        discussion: """
            Each image is turned into MNIST's form before the network sees it: to grey (transparency over \
            white), light ink on black whichever way it was drawn, cropped to the ink, scaled to fit 20x20 \
            with area averaging, and centred by centre of mass in 28x28. --show prints that 28x28 input.
            The exit status is 1 if any image could not be read.
            """)

    @Option(
        name: .customLong("model"),
        help: ArgumentHelp(
            "The model file (safetensors); repeat it to ask an ensemble, whose mean probabilities decide "
                + "(default: model.safetensors).", valueName: "path"))
    var models: [String] = []

    @Option(help: "Also list the next most likely digits, up to K in all (1-10).")
    var top = 1

    @Flag(help: "One JSON object per image: file, digit, confidence and all ten probabilities.")
    var json = false

    @Flag(help: "Print the 28x28 input the network saw, as a text picture, with what preprocessing found.")
    var show = false

    @Argument(help: ArgumentHelp("Image files.", valueName: "image"))
    var images: [String]

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (1...10).contains(top) else { throw ValidationError("--top: must be 1...10, got \(top)") }
        guard !images.isEmpty else { throw ValidationError("name at least one image file") }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.predict")
        let ensemble = try Ensemble(
            loading: (models.isEmpty ? ["model.safetensors"] : models).map { URL(fileURLWithPath: $0) })
        let mean = ensemble.inputMean, deviation = ensemble.inputStandardDeviation
        let preprocessor = MNISTPreprocessor()

        var digits: [(file: String, digit: PreprocessedDigit)] = []
        var failed = false
        for file in images {
            do {
                guard FileManager.default.isReadableFile(atPath: file) else {
                    throw ValidationError(
                        FileManager.default.fileExists(atPath: file)
                            ? "cannot be read (permission denied)" : "no such file")
                }
                let image = try ImageFile.decode(contentsOf: URL(fileURLWithPath: file))
                digits.append((file, try preprocessor.preprocess(image)))
            } catch {
                logger.error("\(file): \(Self.describe(error))")
                failed = true
            }
        }
        let inputs = digits.flatMap { $0.digit.pixels.map { ($0 - mean) / deviation } }
        let probabilities = inputs.isEmpty ? [] : ensemble.probabilities(images: inputs)
        let classes = ensemble.classCount
        for (index, entry) in digits.enumerated() {
            let row = Array(probabilities[(index * classes)..<((index + 1) * classes)])
            let ranked = row.indices.sorted { row[$0] > row[$1] }
            if json {
                print(Self.json(file: entry.file, ranked: ranked, probabilities: row))
            } else {
                let others = ranked.dropFirst().prefix(top - 1).map { "\($0) (\(Self.percent(row[$0])))" }
                print(
                    "\(entry.file): \(ranked[0]) (\(Self.percent(row[ranked[0]])))"
                        + (others.isEmpty ? "" : ", then " + others.joined(separator: ", ")))
            }
            if show {
                print(entry.digit.report)
                print(entry.digit.textPicture)
            }
        }
        if failed { throw ExitCode(1) }
    }

    static func percent(_ probability: Float) -> String { String(format: "%.1f%%", probability * 100) }

    static func json(file: String, ranked: [Int], probabilities: [Float]) -> String {
        let object: [String: Any] = [
            "file": file, "digit": ranked[0], "confidence": Double(probabilities[ranked[0]]),
            "probabilities": probabilities.map { Double($0) },
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// A one-line reason for a file that could not be predicted.
    static func describe(_ error: Error) -> String {
        if let error = error as? ValidationError { return error.message }
        if let error = error as? CocoaError { return error.localizedDescription }
        return "\(error)"
    }
}
