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
            white), a photo's uneven lighting evened out and ruled lines erased, light ink on black whichever \
            way it was drawn, cropped to the ink, scaled to fit 20x20 with area averaging, and centred by \
            centre of mass in 28x28. --show prints that 28x28 input. An image that does not look like one \
            digit (several side by side; after `mnist calibrate`, one whose features lie farther from the \
            training digits' than those of 99% of test digits; or one the network is less than 90% sure of, \
            at the temperature calibrate recorded) is answered "not a digit?" with the reason and the best guess.
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

    @Flag(
        help: ArgumentHelp(
            "One JSON object per image: file, digit, confidence, all ten probabilities, and not_a_digit with "
                + "the reason when the image does not look like one digit."))
    var json = false

    @Flag(help: "Print the 28x28 input the network saw, as a text picture, with what preprocessing found.")
    var show = false

    @Flag(
        help: ArgumentHelp(
            "Read each image as a number written in one row: its digits are found, read one by one and "
                + "printed with their confidences (--json adds each digit's box, --show the inputs)."))
    var number = false

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

        // Each image's inputs: one digit, or the digits of a number with their boxes.
        var entries: [(file: String, digits: [PreprocessedDigit], boxes: [PixelRectangle])] = []
        var maps: [String: InkMap] = [:]
        var numbers: [String: [ReadDigit]] = [:]
        var failed = false
        for file in images {
            do {
                guard FileManager.default.isReadableFile(atPath: file) else {
                    throw ValidationError(
                        FileManager.default.fileExists(atPath: file)
                            ? "cannot be read (permission denied)" : "no such file")
                }
                let image = try ImageFile.decode(contentsOf: URL(fileURLWithPath: file))
                if number {
                    // Read here (each group's cut is chosen by what the network reads); printed below.
                    let digits = try NumberReader(ensemble: ensemble, preprocessor: preprocessor).read(image)
                    numbers[file] = digits
                    entries.append((file, digits.map(\.input), digits.map(\.box)))
                } else {
                    let map = try preprocessor.inkMap(image)
                    let digit = try preprocessor.frame(map, regions: Set(map.regions.map(\.label)))
                    maps[file] = map
                    entries.append((file, [digit], [digit.report.cropBox]))
                }
            } catch {
                logger.error("\(file): \(Self.describe(error))")
                failed = true
            }
        }
        let inputs = number ? [] : entries.flatMap { $0.digits.flatMap { $0.pixels.map { ($0 - mean) / deviation } } }
        let probabilities = inputs.isEmpty ? [] : ensemble.probabilities(images: inputs)
        let unfamiliarity = inputs.isEmpty ? nil : ensemble.unfamiliarity(images: inputs)
        let classes = ensemble.classCount
        var next = 0
        for entry in entries {
            if number {
                let rows = (numbers[entry.file] ?? []).map(\.probabilities)
                print(Self.numberLine(file: entry.file, rows: rows, boxes: entry.boxes, json: json))
                if show {
                    if let first = entry.digits.first {
                        print(first.report.description.split(separator: "\n").prefix(3).joined(separator: "\n"))
                    }
                    for (place, box) in entry.boxes.enumerated() { print("digit \(place + 1): ink box \(box)") }
                    print(
                        TextPicture.sideBySide(
                            entry.digits.map {
                                TextPicture.render($0.pixels, width: $0.side, height: $0.side, columnsPerPixel: 1)
                            }))
                }
                continue
            }
            let row = Array(probabilities[(next * classes)..<((next + 1) * classes)])
            let distance = unfamiliarity?[next]
            next += 1
            let ranked = row.indices.sorted { row[$0] > row[$1] }
            let problem = maps[entry.file].flatMap {
                DigitCheck.problem(with: $0, probabilities: row, unfamiliarity: distance)
            }
            if json {
                print(Self.json(file: entry.file, ranked: ranked, probabilities: row, problem: problem))
            } else {
                let others = ranked.dropFirst().prefix(top - 1).map { "\($0) (\(Self.percent(row[$0])))" }
                let answer = "\(ranked[0]) (\(Self.percent(row[ranked[0]])))"
                print(
                    "\(entry.file): " + (problem.map { "not a digit? \($0); best guess \(answer)" } ?? answer)
                        + (others.isEmpty ? "" : ", then " + others.joined(separator: ", ")))
            }
            if show {
                print(entry.digits[0].report)
                print(entry.digits[0].textPicture)
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// A number's line: the digits read and each one's confidence, or as JSON with each digit's box
    /// and probabilities.
    static func numberLine(file: String, rows: [[Float]], boxes: [PixelRectangle], json: Bool) -> String {
        let best = rows.map { row in row.indices.max { row[$0] < row[$1] } ?? 0 }
        let number = best.map(String.init).joined()
        if json {
            let digits: [[String: Any]] = zip(zip(best, rows), boxes).map { pair, box in
                [
                    "digit": pair.0, "confidence": Double(pair.1[pair.0]),
                    "probabilities": pair.1.map { Double($0) },
                    "box": ["x": box.x, "y": box.y, "width": box.width, "height": box.height],
                ]
            }
            let object: [String: Any] = ["file": file, "number": number, "digits": digits]
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
                return "{}"
            }
            return String(decoding: data, as: UTF8.self)
        }
        let confidences = zip(best, rows).map { "\($0.0) \(percent($0.1[$0.0]))" }.joined(separator: ", ")
        return "\(file): \(number.isEmpty ? "no digits" : number) (\(confidences))"
    }

    static func percent(_ probability: Float) -> String { String(format: "%.1f%%", probability * 100) }

    static func json(file: String, ranked: [Int], probabilities: [Float], problem: String?) -> String {
        var object: [String: Any] = [
            "file": file, "digit": ranked[0], "confidence": Double(probabilities[ranked[0]]),
            "probabilities": probabilities.map { Double($0) },
        ]
        if let problem { object["not_a_digit"] = problem }
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
