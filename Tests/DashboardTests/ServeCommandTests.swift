// `mnist serve` as a user runs it: a real process on a real port, refused public addresses, a missing
// model, and a stop by SIGTERM that exits cleanly.
import ConvNet
import Foundation
import Host
import TestSupport
import Training
import XCTest

final class ServeCommandTests: XCTestCase {
    func testServeAnswersOverHTTPAndStopsOnSIGTERM() throws {
        let directory = try TemporaryDirectory("serve-cli")
        let model = directory.file("model.safetensors")
        try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 5).folded().save(to: model)
        let server = try WatchedProcess(Products.mnist, ["serve", "--model", model.path, "--bind", "0"])
        defer { server.kill(SIGKILL) }
        let line = try XCTUnwrap(server.waitForLine(containing: "serving", seconds: 60), server.output)
        let port = try XCTUnwrap(
            line.range(of: "http://127.0.0.1:").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }, line)

        let health = try RawConnection(port: port)
        health.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        let healthAnswer = health.receiveAll()
        XCTAssertTrue(healthAnswer.hasPrefix("HTTP/1.1 200"), healthAnswer)
        XCTAssertTrue(healthAnswer.contains("\"models\":[\"model.safetensors\"]"), healthAnswer)

        let png = try PredictionServerTests.sevenPNG()
        let predict = try RawConnection(port: port)
        predict.send("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: \(png.count)\r\n\r\n")
        predict.send(png)
        let answer = predict.receiveAll()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        XCTAssertTrue(answer.contains("\"probabilities\":["), answer)

        server.kill(SIGTERM)
        XCTAssertTrue(server.wait(seconds: 10), "serve must stop on SIGTERM: \(server.output)")
        XCTAssertEqual(server.status, 0, server.output)
        XCTAssertThrowsError(try RawConnection(port: port), "the port is closed after the stop")
    }

    func testAPublicAddressNeedsAnExplicitChoiceAndAMissingModelIsNamed() throws {
        let refused = try Subprocess.capture(
            [Products.mnist.path, "serve", "--model", "none.safetensors", "--bind", "0.0.0.0:0"], timeout: 60)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.standardError.contains("--public"), refused.standardError)
        XCTAssertTrue(refused.standardError.contains("127.0.0.1"), refused.standardError)

        let dashboard = try Subprocess.capture(
            [Products.mnist.path, "train", "--dashboard", "0.0.0.0:0", "--epochs", "1"], timeout: 60)
        XCTAssertNotEqual(dashboard.status, 0)
        XCTAssertTrue(dashboard.standardError.contains("pass --dashboard-public"), dashboard.standardError)

        let malformed = try Subprocess.capture([Products.mnist.path, "serve", "--bind", "localhost:http"], timeout: 60)
        XCTAssertNotEqual(malformed.status, 0)
        XCTAssertTrue(malformed.standardError.contains("expected HOST:PORT"), malformed.standardError)

        let directory = try TemporaryDirectory("serve-cli")
        let missing = directory.file("absent.safetensors").path
        let result = try Subprocess.capture(
            [Products.mnist.path, "serve", "--model", missing, "--bind", "0"], timeout: 60)
        XCTAssertEqual(result.status, 1, result.standardError)
        XCTAssertTrue(result.standardError.contains(missing), result.standardError)
        XCTAssertFalse(result.standardOutput.contains("serving"), result.standardOutput)
    }
}
