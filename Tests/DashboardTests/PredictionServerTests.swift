// `mnist serve`'s routes through Hummingbird's test client: every endpoint, the answers checked against
// the models and preprocessing called directly, bad uploads, the size and concurrency limits, and the
// Prometheus exposition format.
import ConvNet
import Dashboard
import Foundation
import Hummingbird
import HummingbirdTesting
import MNIST
import TestSupport
import Training
import XCTest

final class PredictionServerTests: XCTestCase {
    /// A model file with the default architecture's untrained weights: its answers are arbitrary but
    /// exactly reproducible, which is what the routes must pass on.
    private func model(in directory: TemporaryDirectory, seed: UInt64 = 7) throws -> URL {
        let url = directory.file("model-\(seed).safetensors")
        try Network(architecture: ModelPreset.defaultPreset.architecture, seed: seed).folded().save(to: url)
        return url
    }

    private func server(models: [URL], limit: Int = 4, timeout: Duration = .seconds(10)) throws -> PredictionServer {
        let ensemble = try Ensemble(loading: models)
        return PredictionServer(
            reader: DigitReader(ensemble: ensemble), modelNames: models.map(\.lastPathComponent),
            parameterCount: ensemble.networks.map(\.parameterCount).reduce(0, +),
            maximumConcurrentPredictions: limit, uploadTimeout: timeout)
    }

    /// A dark "7" on light paper, 60x80, as PNG bytes.
    static func sevenPNG() throws -> [UInt8] {
        var image = RasterImage(width: 60, height: 80, layout: .grey, filledWith: [235])
        for y in 0..<80 {
            for x in 0..<60 {
                let top = (10..<20).contains(y) && (10..<50).contains(x)
                let stem = abs(Double(x) - (50 - Double(y - 10) * 0.35)) < 5 && (10..<72).contains(y)
                if top || stem { image.samples[y * 60 + x] = 30 }
            }
        }
        return try PNG.encode(image)
    }

    private static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    func testPredictAnswersWhatTheModelsSayAboutThePreprocessedImage() async throws {
        let directory = try TemporaryDirectory("serve")
        let models = [try model(in: directory, seed: 7), try model(in: directory, seed: 8)]
        let application = Application(router: try server(models: models).router())
        let png = try Self.sevenPNG()

        // The reference: the same file through the public pieces, without HTTP.
        let digit = try MNISTPreprocessor().preprocess(try ImageFile.decode(png))
        let ensemble = try Ensemble(loading: models)
        let expected = ensemble.probabilities(
            images: digit.pixels.map { ($0 - ensemble.inputMean) / ensemble.inputStandardDeviation })

        try await application.test(.router) { client in
            try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: png)) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers[.contentType], "application/json; charset=utf-8")
                let body = try Self.json(response.body)
                let probabilities = try XCTUnwrap(body["probabilities"] as? [Double])
                XCTAssertEqual(probabilities.map { Float($0) }, expected, "the ensemble's mean, to the bit")
                let best = expected.indices.max { expected[$0] < expected[$1] }
                XCTAssertEqual(body["digit"] as? Int, best)
                XCTAssertEqual((body["confidence"] as? Double).map { Float($0) }, expected[best ?? 0])
                XCTAssertEqual(body["input"] as? [Int], digit.bytes.map { Int($0) })
                // The PNG data URL decodes to the same 28x28 input.
                let url = try XCTUnwrap(body["input_png"] as? String)
                XCTAssertTrue(url.hasPrefix("data:image/png;base64,"))
                let decoded = try ImageFile.decode(
                    [UInt8](try XCTUnwrap(Data(base64Encoded: String(url.dropFirst("data:image/png;base64,".count))))))
                XCTAssertEqual(decoded.width, 28)
                XCTAssertEqual(decoded.samples, digit.bytes)
                let report = try XCTUnwrap(body["preprocessing"] as? [String: Any])
                XCTAssertEqual(report["inverted"] as? Bool, true, "dark ink on light paper")
                XCTAssertEqual(report["source_width"] as? Int ?? report["sourceWidth"] as? Int, 60)
                // Untrained weights are unsure of everything, and the answer says so, as `predict` would.
                let map = try MNISTPreprocessor().inkMap(try ImageFile.decode(png))
                let doubt = try XCTUnwrap(DigitCheck.problem(with: map, probabilities: expected))
                XCTAssertEqual(body["not_a_digit"] as? String, doubt)
            }
            // Two sevens side by side are several digits, whatever the network says.
            var pair = RasterImage(width: 130, height: 80, layout: .grey, filledWith: [235])
            let seven = try ImageFile.decode(png).converted(to: .grey)
            for y in 0..<80 {
                for x in 0..<60 {
                    pair.samples[y * 130 + x] = seven.samples[y * 60 + x]
                    pair.samples[y * 130 + x + 70] = seven.samples[y * 60 + x]
                }
            }
            try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: try PNG.encode(pair))) {
                response in
                XCTAssertEqual(response.status, .ok)
                let doubt = try XCTUnwrap(Self.json(response.body)["not_a_digit"] as? String)
                XCTAssertTrue(doubt.contains("2 digits side by side"), doubt)
            }
        }
    }

    func testBadUploadsGetA4xxWithAJSONErrorThatSaysWhatWasWrong() async throws {
        let directory = try TemporaryDirectory("serve")
        let server = try server(models: [try model(in: directory)])
        let application = Application(router: server.router())
        let blank = try PNG.encode(RasterImage(width: 40, height: 40, layout: .grey, filledWith: [255]))
        let truncated = Array(try Self.sevenPNG().prefix(60))
        let cases: [(String, [UInt8], HTTPResponse.Status, String)] = [
            ("text", Array("hello".utf8), .unprocessableContent, "not an image"),
            ("JPEG", [0xFF, 0xD8, 0xFF, 0xE0, 0, 16], .unprocessableContent, "JPEG"),
            ("truncated PNG", truncated, .unprocessableContent, "not an image"),
            ("blank page", blank, .unprocessableContent, "no digit"),
            ("empty body", [], .unprocessableContent, "empty"),
            ("9 MiB", [UInt8](repeating: 0, count: 9 << 20), .contentTooLarge, "larger than 8 MiB"),
        ]
        try await application.test(.router) { client in
            for (name, bytes, status, phrase) in cases {
                try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: bytes)) { response in
                    XCTAssertEqual(response.status, status, name)
                    let error = try Self.json(response.body)["error"] as? [String: Any]
                    let message = try XCTUnwrap(error?["message"] as? String, name)
                    XCTAssertTrue(message.contains(phrase), "\(name): \(message)")
                }
            }
            try await client.execute(uri: "/predict", method: .get) { response in
                XCTAssertEqual(response.status, .methodNotAllowed)
                XCTAssertEqual(response.headers[.allow], "POST")
            }
            try await client.execute(uri: "/no-such-page", method: .get) { response in
                XCTAssertEqual(response.status, .notFound)
            }
        }
        let metrics = String(decoding: server.metrics.render(), as: UTF8.self)
        XCTAssertTrue(metrics.contains("mnist_serve_rejected_total{reason=\"unreadable_image\"} 4"), metrics)
        XCTAssertTrue(metrics.contains("mnist_serve_rejected_total{reason=\"no_digit\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("mnist_serve_rejected_total{reason=\"too_large\"} 1"), metrics)
    }

    func testHealthAndPagesAndMetrics() async throws {
        let directory = try TemporaryDirectory("serve")
        let model = try model(in: directory)
        let server = try server(models: [model])
        let application = Application(router: server.router())
        let png = try Self.sevenPNG()
        try await application.test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                let body = try Self.json(response.body)
                XCTAssertEqual(body["status"] as? String, "ok")
                XCTAssertEqual(body["models"] as? [String], [model.lastPathComponent])
                XCTAssertEqual(body["parameters"] as? Int, try Network.load(from: model).network.parameterCount)
            }
            for (path, type, content) in [
                ("/", "text/html", "<canvas id=\"pad\""), ("/draw.js", "text/javascript", "pointerdown"),
                ("/style.css", "text/css", "#pad"),
            ] {
                try await client.execute(uri: path, method: .get) { response in
                    XCTAssertEqual(response.status, .ok, path)
                    XCTAssertTrue(response.headers[.contentType]?.hasPrefix(type) ?? false, path)
                    XCTAssertEqual(
                        response.headers[.contentSecurityPolicy],
                        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
                    )
                    XCTAssertTrue(String(buffer: response.body).contains(content), path)
                }
            }
            for _ in 0..<3 {
                try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: png)) { _ in }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers[.contentType], "text/plain; version=0.0.4; charset=utf-8")
                let text = String(buffer: response.body)
                let samples = try PrometheusText.parse(text)
                let answered = samples.filter { $0.name == "mnist_serve_predictions_total" }
                XCTAssertEqual(answered.count, 10, "one series per digit")
                XCTAssertEqual(answered.map(\.value).reduce(0, +), 3)
                XCTAssertEqual(samples.first { $0.name == "mnist_serve_prediction_seconds_count" }?.value, 3)
                XCTAssertEqual(samples.first { $0.name == "mnist_serve_models" }?.value, 1)
                XCTAssertEqual(samples.first { $0.name == "mnist_serve_predictions_in_flight" }?.value, 0)
            }
        }
    }
}
