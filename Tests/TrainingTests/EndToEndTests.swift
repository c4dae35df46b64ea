// The commands as a user runs them, on the real MNIST: train a model with `mnist train`, check it with
// `mnist evaluate`, and predict digits that were saved the way users save them with `mnist predict`.
// One training run with the default configuration, the model users get, is shared by the tests of this
// class. (A one-epoch model, used before, agrees less with itself on re-saved digits: 294 of 300 with
// batch normalisation, against 299 for the default model.)
import ConvNet
import Foundation
import Host
import MNIST
import TestSupport
import Training
import XCTest

final class EndToEndTests: XCTestCase {
    // nonisolated(unsafe): XCTest runs the tests of a class one after another on one thread.
    nonisolated(unsafe) private static var directory: TemporaryDirectory?
    nonisolated(unsafe) private static var trainResult: Subprocess.Outcome?

    /// The shared folder goes when the class is done (a static is never released otherwise).
    override class func tearDown() {
        directory = nil
        trainResult = nil
        super.tearDown()
    }

    /// Trains once, for the whole class: the default configuration.
    private func trainedModel() throws -> URL {
        do {
            _ = try requireRealMNIST()
        } catch let missing as RealMNISTMissing where !isContinuousIntegration {
            throw XCTSkip("\(missing)")
        }
        if Self.directory == nil {
            let directory = try TemporaryDirectory("e2e")
            Self.directory = directory
            Self.trainResult = try Subprocess.capture(
                [
                    Products.mnist.path, "train", "--output", directory.file("model.safetensors").path,
                    "--log-format", "json",
                ],
                timeout: 900)
        }
        let result = try XCTUnwrap(Self.trainResult)
        XCTAssertEqual(result.status, 0, result.standardError)
        return try XCTUnwrap(Self.directory).file("model.safetensors")
    }

    func testTrainWritesAModelThatEvaluateConfirms() throws {
        let model = try trainedModel()
        let result = try XCTUnwrap(Self.trainResult)
        // --log-format json: one object per epoch on stdout.
        let lines = result.standardOutput.split(separator: "\n")
        XCTAssertEqual(lines.count, TrainingConfiguration().epochs, result.standardOutput)
        let epoch = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8)) as? [String: Any], result.standardOutput)
        let reported = try XCTUnwrap(epoch["test_accuracy"] as? Double)
        XCTAssertGreaterThan(reported, 0.993, "the default configuration reached 99.40-99.46% with seeds 1-3")
        for key in ["epoch", "loss", "train_accuracy", "seconds", "images_per_second"] {
            XCTAssertNotNil(epoch[key], "missing \(key) in \(epoch)")
        }

        let evaluation = try Subprocess.capture(
            [Products.mnist.path, "evaluate", "--model", model.path, "--json"], timeout: 600)
        XCTAssertEqual(evaluation.status, 0, evaluation.standardError)
        let object = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(evaluation.standardOutput.utf8)) as? [String: Any])
        let accuracy = try XCTUnwrap(object["accuracy"] as? Double)
        XCTAssertEqual(accuracy, reported, accuracy: 1e-9, "evaluate must agree with what train reported")
        let confusion = try XCTUnwrap(object["confusion"] as? [[Int]])
        XCTAssertEqual(confusion.count, 10)
        XCTAssertEqual(confusion.joined().reduce(0, +), 10_000)
        XCTAssertEqual(Double((0..<10).map { confusion[$0][$0] }.reduce(0, +)) / 10_000, accuracy, accuracy: 1e-12)

        // The file is standard safetensors with the architecture in its metadata.
        let (network, metadata) = try Network.load(from: model)
        XCTAssertEqual(metadata[ModelMetadataKey.model], ModelPreset.defaultPreset.name)
        XCTAssertEqual(
            network.parameterCount,
            try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 0).folded().parameterCount)
    }

    /// `mnist train --workers 3` writes the very file that the single process wrote, on the real data.
    func testThreeWorkerProcessesWriteTheSameModelFileAsOneProcess() throws {
        let model = try trainedModel()
        let directory = try XCTUnwrap(Self.directory)
        let result = try Subprocess.capture(
            [
                Products.mnist.path, "train", "--workers", "3", "--output",
                directory.file("workers3.safetensors").path, "--quiet",
            ],
            timeout: 900)
        XCTAssertEqual(result.status, 0, result.standardError)
        let single = try Data(contentsOf: model).sha256Hex
        let distributed = try Data(contentsOf: directory.file("workers3.safetensors")).sha256Hex
        print("SHA-256: train \(single), train --workers 3 \(distributed)")
        XCTAssertEqual(distributed, single)
    }

    /// Test-set digits saved the way users save them must get the same prediction as the originals.
    func testPredictAgreesOnDigitsSavedAsUsersSaveThem() throws {
        let model = try trainedModel()
        let test = try requireRealMNIST().load().test
        let (network, _) = try Network.load(from: model)
        let count = 300
        let originals = network.predictions(
            images: InputNormalization.normalized(Array(test.pixels[0..<(count * 784)])))

        let directory = try TemporaryDirectory("predict")
        var random = TestGenerator(seed: 20_261_126)
        var files: [String] = []
        for index in 0..<count {
            let digit = Array(test.pixels[(index * 784)..<((index + 1) * 784)])
            let image = UserRendering.render(digit, using: &random)
            // One in three saved as a JPEG; half of those stored sideways with an EXIF orientation
            // of 6 (turn 90° clockwise), as phones save photos.
            let bytes: [UInt8]
            switch index % 6 {
            case 1: bytes = try JPEG.encode(image, quality: 85)
            case 4:
                bytes = JPEGFiles.inserting(
                    JPEGFiles.exifSegment(orientation: 6), into: try JPEG.encode(image.oriented(8), quality: 85))
            default: bytes = try PNG.encode(image)
            }
            let name = String(format: "digit-%03d.%@", index, index % 3 == 1 ? "jpg" : "png")
            let file = directory.file(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            files.append(file)
        }
        let result = try Subprocess.capture(
            [Products.mnist.path, "predict", "--model", model.path, "--json"] + files, timeout: 600)
        XCTAssertEqual(result.status, 0, result.standardError)
        let answers = result.standardOutput.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        XCTAssertEqual(answers.count, count)
        var agreements = 0
        var disagreements: [String] = []
        for (index, answer) in answers.enumerated() {
            XCTAssertEqual(answer["file"] as? String, files[index])
            if answer["digit"] as? Int == originals[index] {
                agreements += 1
            } else {
                disagreements.append("\(index): \(answer["digit"] ?? "?") vs \(originals[index])")
            }
            let probabilities = try XCTUnwrap(answer["probabilities"] as? [Double])
            XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-3)
        }
        let agreement = Double(agreements) / Double(count)
        print(
            "predict agreed with the 28x28 originals on \(agreements)/\(count) rendered digits; differ: \(disagreements)"
        )
        XCTAssertGreaterThanOrEqual(agreement, 0.99, "\(disagreements)")
    }

    /// Phone photos of test-set digits (made by `PhotoRendering`: lighting gradients, shadows, paper
    /// grain, ruled and squared paper, slanted and off-centre digits, blur, JPEG), each condition alone
    /// and all of them together, read by `mnist predict`. Prints the accuracy per condition (the
    /// README's table) next to the model's own accuracy on the same digits as 28x28 originals.
    func testPredictReadsPhotosOfDigits() throws {
        let model = try trainedModel()
        let test = try requireRealMNIST().load().test
        let (network, _) = try Network.load(from: model)
        let perCondition = 50
        let directory = try TemporaryDirectory("photos")
        var random = TestGenerator(seed: 20_261_206)
        var files: [(condition: String, file: String, index: Int)] = []
        // Test digits 1000 onwards, each used once.
        var index = 1000
        for (name, conditions) in PhotoConditions.catalogue {
            for _ in 0..<perCondition {
                let digit = Array(test.pixels[(index * 784)..<((index + 1) * 784)])
                let photo = PhotoRendering.render(digit, conditions: conditions, using: &random)
                let (bytes, fileExtension) = try PhotoRendering.file(photo, conditions: conditions, using: &random)
                let file = directory.file("photo-\(index).\(fileExtension)").path
                try Data(bytes).write(to: URL(fileURLWithPath: file))
                files.append((name, file, index))
                index += 1
            }
        }
        let originals = network.predictions(
            images: InputNormalization.normalized(Array(test.pixels[(1000 * 784)..<(index * 784)])))
        let result = try Subprocess.capture(
            [Products.mnist.path, "predict", "--model", model.path, "--json"] + files.map(\.file), timeout: 600)
        XCTAssertEqual(result.status, 0, result.standardError)
        let answers = result.standardOutput.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        XCTAssertEqual(answers.count, files.count, result.standardError)
        var right: [String: Int] = [:], originalRight: [String: Int] = [:], wrong: [String: [String]] = [:]
        for (answer, entry) in zip(answers, files) {
            XCTAssertEqual(answer["file"] as? String, entry.file)
            let label = Int(test.labels[entry.index])
            if answer["digit"] as? Int == label {
                right[entry.condition, default: 0] += 1
            } else {
                wrong[entry.condition, default: []].append("\(entry.index): \(label) read as \(answer["digit"] ?? "?")")
            }
            if originals[entry.index - 1000] == label { originalRight[entry.condition, default: 0] += 1 }
        }
        var table = "condition      photos right  (the 28x28 originals)\n"
        for (name, _) in PhotoConditions.catalogue {
            table +=
                name.padding(toLength: 15, withPad: " ", startingAt: 0)
                + "\(right[name] ?? 0)/\(perCondition)".padding(toLength: 14, withPad: " ", startingAt: 0)
                + "(\(originalRight[name] ?? 0)/\(perCondition))  \(wrong[name] ?? [])\n"
        }
        let total = right.values.reduce(0, +), originalTotal = originalRight.values.reduce(0, +)
        table += "all            \(total)/\(files.count)       (\(originalTotal)/\(files.count))"
        print(table)
        XCTAssertGreaterThanOrEqual(Double(total) / Double(files.count), 0.97, table)
        for (name, _) in PhotoConditions.catalogue {
            XCTAssertGreaterThanOrEqual(right[name] ?? 0, perCondition * 9 / 10, "\(name)\n\(table)")
        }
    }

    /// Numbers of 3-6 test-set digits, clean and as phone photos, read by `mnist predict --number`: 200
    /// with gaps from wide (10 MNIST pixels) to touching (0), what the aim of 90% read exactly is about,
    /// and 60 whose digits overlap (at least one gap of -1 or -2 pixels: strokes cross into the
    /// neighbour's columns). Prints how many were read exactly, per condition.
    func testPredictReadsNumbers() throws {
        let model = try trainedModel()
        let test = try requireRealMNIST().load().test
        let directory = try TemporaryDirectory("numbers")
        var random = TestGenerator(seed: 20_261_207)
        var files: [(condition: String, file: String, number: String)] = []
        var index = 3000
        let sets: [(name: String, count: Int, overlapping: Bool)] = [
            ("clean", 100, false), ("phone photo", 100, false), ("overlapping", 60, true),
        ]
        for set in sets {
            for number in 0..<set.count {
                let conditions =
                    set.name == "clean" || (set.overlapping && number % 2 == 0) ? [] : PhotoConditions.phone
                let count = Int.random(in: 3...6, using: &random)
                let digits = (index..<(index + count)).map { Array(test.pixels[($0 * 784)..<(($0 + 1) * 784)]) }
                let text = (index..<(index + count)).map { String(test.labels[$0]) }.joined()
                var gaps = (1..<count).map { _ in Int.random(in: (set.overlapping ? -2 : 0)...10, using: &random) }
                if set.overlapping, gaps.allSatisfy({ $0 >= 0 }) {
                    gaps[Int.random(in: 0..<gaps.count, using: &random)] = Int.random(in: -2 ... -1, using: &random)
                }
                index += count
                let (canvas, columns) = NumberRendering.compose(digits, gaps: gaps)
                let photo = PhotoRendering.render(canvas, columns: columns, conditions: conditions, using: &random)
                let (bytes, fileExtension) = try PhotoRendering.file(photo, conditions: conditions, using: &random)
                let file = directory.file("number-\(files.count).\(fileExtension)").path
                try Data(bytes).write(to: URL(fileURLWithPath: file))
                files.append((set.name, file, text))
            }
        }
        let result = try Subprocess.capture(
            [Products.mnist.path, "predict", "--number", "--model", model.path, "--json"] + files.map(\.file),
            timeout: 600)
        XCTAssertEqual(result.status, 0, result.standardError)
        let answers = result.standardOutput.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        XCTAssertEqual(answers.count, files.count, result.standardError)
        var exact: [String: Int] = [:], misread: [String: [String]] = [:]
        for (answer, entry) in zip(answers, files) {
            let digits = try XCTUnwrap(answer["digits"] as? [[String: Any]])
            XCTAssertEqual(digits.count, (answer["number"] as? String)?.count)
            for digit in digits { XCTAssertNotNil((digit["box"] as? [String: Int])?["width"], "\(digit)") }
            if answer["number"] as? String == entry.number {
                exact[entry.condition, default: 0] += 1
            } else {
                misread[entry.condition, default: []].append("\(entry.number) as \(answer["number"] ?? "?")")
            }
        }
        let report = sets.map { "\($0.name) \(exact[$0.name] ?? 0)/\($0.count): \(misread[$0.name] ?? [])" }
        print("numbers read exactly:\n" + report.joined(separator: "\n"))
        // Wide to touching: 184 of 200 today (the aim is 90%); overlapping: 43 of 60. Most misreadings are
        // single digits misread, and overlapping digits that no cut from top to bottom parts.
        XCTAssertGreaterThanOrEqual((exact["clean"] ?? 0) + (exact["phone photo"] ?? 0), 176, "\(report)")
        XCTAssertGreaterThanOrEqual(exact["overlapping"] ?? 0, 36, "\(report)")
    }

    /// `mnist calibrate` fits a temperature and records it; `mnist predict` then says which images are
    /// not a digit: test-made letters, scribbles, paper textures and several digits side by side,
    /// against test digits photographed the same way. Prints the rates (the README's figures).
    func testCalibrateThenPredictSaysWhatIsNotADigit() throws {
        let directory = try TemporaryDirectory("not-digits")
        let model = directory.file("calibrated.safetensors")
        try FileManager.default.copyItem(at: try trainedModel(), to: model)
        let calibrate = try Subprocess.capture(
            [Products.mnist.path, "calibrate", "--model", model.path], timeout: 600)
        XCTAssertEqual(calibrate.status, 0, calibrate.standardError)
        XCTAssertTrue(
            calibrate.standardOutput.contains("expected calibration error went from"), calibrate.standardOutput)
        let (_, metadata) = try Network.load(from: model)
        let temperature = try XCTUnwrap(metadata["temperature"].flatMap(Double.init), "\(metadata)")
        XCTAssertTrue((0.2...5).contains(temperature), "\(temperature)")
        XCTAssertTrue(calibrate.standardOutput.contains("feature check"), calibrate.standardOutput)
        let threshold = try XCTUnwrap(metadata[ModelMetadataKey.featureThreshold].flatMap(Double.init), "\(metadata)")
        XCTAssertGreaterThan(threshold, 0)

        let test = try requireRealMNIST().load().test
        var random = TestGenerator(seed: 20_261_208)
        let letters = NotDigitDrawing.letters.sorted { $0.key < $1.key }
        var files: [(kind: String, file: String)] = []
        func write(_ image: RasterImage, _ kind: String) throws {
            let file = directory.file("\(kind)-\(files.count).ppm").path
            try Data(PNM.encode(image)).write(to: URL(fileURLWithPath: file))
            files.append((kind, file))
        }
        for n in 0..<40 {
            let conditions: PhotoConditions = n % 2 == 0 ? [] : [.gradient, .grain]
            let letter = NotDigitDrawing.draw(letters[n % letters.count].value, jitter: 0.06, using: &random)
            try write(PhotoRendering.render(letter, conditions: conditions, using: &random), "letter")
            try write(
                PhotoRendering.render(NotDigitDrawing.scribble(using: &random), conditions: conditions, using: &random),
                "scribble")
            try write(
                PhotoRendering.render(
                    [UInt8](repeating: 0, count: 784), conditions: [.grain, .gradient, .shadow], using: &random),
                "texture")
            let count = Int.random(in: 2...3, using: &random)
            let digits = (0..<count).map {
                Array(test.pixels[((4000 + 3 * n + $0) * 784)..<((4001 + 3 * n + $0) * 784)])
            }
            let (canvas, columns) = NumberRendering.compose(
                digits, gaps: (1..<count).map { _ in Int.random(in: 2...8, using: &random) })
            try write(
                PhotoRendering.render(canvas, columns: columns, conditions: conditions, using: &random), "several")
        }
        for n in 0..<200 {
            let digit = Array(test.pixels[((5000 + n) * 784)..<((5001 + n) * 784)])
            try write(
                PhotoRendering.render(digit, conditions: n % 2 == 0 ? [] : [.gradient, .grain], using: &random), "digit"
            )
        }
        let result = try Subprocess.capture(
            [Products.mnist.path, "predict", "--model", model.path, "--json"] + files.map(\.file), timeout: 600)
        let answers = result.standardOutput.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        var flagged: [String: Int] = [:], total: [String: Int] = [:]
        for (kind, _) in files { total[kind, default: 0] += 1 }
        for answer in answers where answer["not_a_digit"] != nil {
            let file = try XCTUnwrap(answer["file"] as? String)
            flagged[try XCTUnwrap(files.first { $0.file == file }).kind, default: 0] += 1
        }
        // A blank page is an error (exit status 1), which flags it too.
        let blank = result.standardError.split(separator: "\n").filter { $0.contains("looks blank") }
        flagged["texture", default: 0] += blank.count
        XCTAssertEqual(answers.count + blank.count, files.count, result.standardError)
        let rates = total.keys.sorted().map { "\($0) \(flagged[$0] ?? 0)/\(total[$0] ?? 0)" }
        print("flagged as not a digit (temperature \(temperature)): \(rates.joined(separator: ", "))")
        XCTAssertLessThanOrEqual(flagged["digit"] ?? 0, 4, "\(rates)")
        XCTAssertGreaterThanOrEqual(flagged["several"] ?? 0, 36, "\(rates)")
        XCTAssertGreaterThanOrEqual(flagged["scribble"] ?? 0, 20, "\(rates)")
        // With the confidence alone (before the feature check): letters 15, textures 26.
        XCTAssertGreaterThanOrEqual(flagged["texture"] ?? 0, 30, "\(rates)")
        XCTAssertGreaterThanOrEqual(flagged["letter"] ?? 0, 18, "\(rates)")
    }

    func testPredictReportsBadFilesAndStillPredictsTheOthers() throws {
        let model = try trainedModel()
        let directory = try TemporaryDirectory("predict-bad")
        var random = TestGenerator(seed: 3)
        let test = try requireRealMNIST().load().test
        let good = directory.file("good.png")
        try Data(PNG.encode(UserRendering.render(Array(test.pixels[0..<784]), using: &random))).write(to: good)
        let empty = directory.file("empty.png")
        try Data().write(to: empty)
        let jpeg = directory.file("photo.png")
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 0x4A, 0x46, 0x49, 0x46, 0]).write(to: jpeg)
        let truncated = directory.file("cut.png")
        try Data(PNG.encode(UserRendering.render(Array(test.pixels[0..<784]), using: &random)).prefix(60)).write(
            to: truncated)
        let missing = directory.file("missing.png")
        let zeroSized = directory.file("zero.pgm")
        try Data("P5 0 5 255\n".utf8).write(to: zeroSized)
        let huge = directory.file("huge.pgm")  // 10000x10000 declared: refused before any allocation
        try Data("P5 10000 10000 255\n".utf8 + [1, 2, 3]).write(to: huge)
        let result = try Subprocess.capture(
            [
                Products.mnist.path, "predict", "--model", model.path, empty.path, jpeg.path, zeroSized.path,
                good.path, truncated.path, huge.path, missing.path,
            ], timeout: 600)
        XCTAssertEqual(result.status, 1, "the exit status must say that something failed")
        XCTAssertTrue(result.standardOutput.hasPrefix("\(good.path): "), result.standardOutput)
        let errors = result.standardError.split(separator: "\n")
        XCTAssertEqual(errors.count, 6, result.standardError)
        for (file, words) in [
            (empty, "empty"), (jpeg, "JPEG"), (truncated, "truncated"), (missing, "no such file"),
            (zeroSized, "no pixels"), (huge, "over the limit of 50 megapixels"),
        ] {
            XCTAssertTrue(
                errors.contains { $0.contains(file.path) && $0.contains(words) },
                "\(file.lastPathComponent): \(result.standardError)")
        }
        XCTAssertFalse(result.standardError.contains("Fatal error"), result.standardError)
    }
}

/// Renders an MNIST digit the way a user would save one: scaled up 2x to 15x (bilinear), with random
/// margins, as black ink on white grey or RGB, white on black, or on a transparent RGBA background.
enum UserRendering {
    static func render(_ digit: [UInt8], using random: inout TestGenerator) -> RasterImage {
        let scale = Int.random(in: 2...15, using: &random)
        let side = 28 * scale
        let left = Int.random(in: 0...(side / 2), using: &random),
            right = Int.random(in: 0...(side / 2), using: &random)
        let top = Int.random(in: 0...(side / 2), using: &random),
            bottom = Int.random(in: 0...(side / 2), using: &random)
        let width = side + left + right, height = side + top + bottom
        var ink = [Float](repeating: 0, count: width * height)  // 0...1, 1 = ink
        for y in 0..<side {
            let sourceY = min(max((Float(y) + 0.5) / Float(scale) - 0.5, 0), 27)
            let y0 = Int(sourceY), y1 = min(y0 + 1, 27), fy = sourceY - Float(y0)
            for x in 0..<side {
                let sourceX = min(max((Float(x) + 0.5) / Float(scale) - 0.5, 0), 27)
                let x0 = Int(sourceX), x1 = min(x0 + 1, 27), fx = sourceX - Float(x0)
                func p(_ xx: Int, _ yy: Int) -> Float { Float(digit[yy * 28 + xx]) / 255 }
                let value =
                    (p(x0, y0) * (1 - fx) + p(x1, y0) * fx) * (1 - fy) + (p(x0, y1) * (1 - fx) + p(x1, y1) * fx) * fy
                ink[(y + top) * width + x + left] = value
            }
        }
        switch Int.random(in: 0..<4, using: &random) {
        case 0:  // black ink on white, grey
            return RasterImage(width: width, height: height, layout: .grey, samples: ink.map { UInt8((1 - $0) * 255) })
        case 1:  // dark blue ink on white, RGB
            let samples = ink.flatMap { v -> [UInt8] in
                [UInt8((1 - v) * 255), UInt8((1 - v * 0.9) * 255), UInt8((1 - v * 0.3) * 255)]
            }
            return RasterImage(width: width, height: height, layout: .rgb, samples: samples)
        case 2:  // black ink on a transparent background, RGBA
            let samples = ink.flatMap { v -> [UInt8] in [0, 0, 0, UInt8(v * 255)] }
            return RasterImage(width: width, height: height, layout: .rgba, samples: samples)
        default:  // white ink on black, grey
            return RasterImage(width: width, height: height, layout: .grey, samples: ink.map { UInt8($0 * 255) })
        }
    }
}
