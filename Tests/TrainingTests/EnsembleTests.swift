// Ensembles in `mnist evaluate` and `mnist predict`: several --model files answer with the mean of
// their class probabilities. Checked against each model's own probabilities averaged here, with
// models trained on a tiny dataset, and a model that reads its input differently is refused.
import ConvNet
import Foundation
import Host
import MNIST
import TestSupport
import Training
import XCTest

final class EnsembleTests: XCTestCase {
    func testEvaluateAndPredictAverageTheModelsProbabilities() throws {
        let data = try TinyDataset.folder("ensemble-data", seed: 51)
        let output = try TemporaryDirectory("ensemble-out")
        let models = try [3, 4].map { seed -> URL in
            let url = output.file("model-\(seed).safetensors")
            let result = try Subprocess.capture(
                [
                    Products.mnist.path, "train", "--data", data.url.path, "--epochs", "2", "--batch-size", "64",
                    "--seed", "\(seed)", "--output", url.path, "--quiet",
                ], timeout: 300)
            XCTAssertEqual(result.status, 0, result.standardError)
            return url
        }
        let networks = try models.map { try Network.load(from: $0).network }
        let test = TinyDataset.images(count: 160, seed: 52)
        let inputs = InputNormalization.normalized(test.pixels)
        let each = networks.map { $0.probabilities(images: inputs) }
        let mean = zip(each[0], each[1]).map { Float((Double($0) + Double($1)) / 2) }
        var correct = 0
        for n in 0..<test.count {
            let row = Array(mean[(n * 10)..<((n + 1) * 10)])
            if row.indices.max(by: { row[$0] < row[$1] }) == Int(test.labels[n]) { correct += 1 }
        }

        func evaluate(_ files: [URL]) throws -> [String: Any] {
            let result = try Subprocess.capture(
                [Products.mnist.path, "evaluate", "--data", data.url.path, "--json"]
                    + files.flatMap { ["--model", $0.path] }, timeout: 120)
            XCTAssertEqual(result.status, 0, result.standardError)
            return try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
        }
        let ensemble = try evaluate(models)
        XCTAssertEqual(ensemble["accuracy"] as? Double, Double(correct) / Double(test.count))
        XCTAssertEqual((ensemble["models"] as? [String])?.count, 2)
        let single = try evaluate([models[0]])
        XCTAssertEqual(try evaluate([models[0], models[0]])["accuracy"] as? Double, single["accuracy"] as? Double)

        // predict: one test image as a PGM file.
        let image = output.file("digit.pgm")
        try Data(Array("P5\n28 28\n255\n".utf8) + Array(test.pixels[0..<784])).write(to: image)
        func probabilities(_ files: [URL]) throws -> [Double] {
            let result = try Subprocess.capture(
                [Products.mnist.path, "predict", "--json", image.path] + files.flatMap { ["--model", $0.path] },
                timeout: 60)
            XCTAssertEqual(result.status, 0, result.standardError)
            let object = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
            return try XCTUnwrap(object["probabilities"] as? [Double])
        }
        let (first, second, both) = (
            try probabilities([models[0]]), try probabilities([models[1]]), try probabilities(models)
        )
        XCTAssertEqual(both.count, 10)
        for k in 0..<10 { XCTAssertEqual(both[k], (first[k] + second[k]) / 2, accuracy: 1e-6, "class \(k)") }
        XCTAssertNotEqual(first, second, "two seeds, two models")

        // A model trained with another input normalisation cannot join.
        let (network, metadata) = try Network.load(from: models[1])
        var other = metadata
        other[ModelMetadataKey.inputMean] = "0.5"
        let odd = output.file("odd.safetensors")
        try network.save(to: odd, metadata: other)
        let refused = try Subprocess.capture(
            [
                Products.mnist.path, "evaluate", "--data", data.url.path, "--model", models[0].path, "--model",
                odd.path,
            ], timeout: 60)
        XCTAssertEqual(refused.status, 1, refused.standardError)
        XCTAssertTrue(refused.standardError.contains("cannot join an ensemble"), refused.standardError)
    }
}
