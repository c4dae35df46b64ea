// PROTOCOL.md's Python worker skeleton, taken from the document itself, against a real coordinator with
// keys: with the worker key it passes the CURVE handshake, says hello, gets its shard and reports ready,
// so that training starts with it (its gradient function is left to the reader, so it stops at the
// first step); with a key the coordinator does not know it exits saying the key was refused. And the
// document's example settings are what a coordinator with the defaults sends.
import Foundation
import Host
import TestSupport
import Training
import XCTest

final class PythonWorkerTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// What follows the first `opening` in PROTOCOL.md, up to the closing ``` of its block.
    private func block(startingWith opening: String) throws -> String {
        let text = try String(
            contentsOf: Self.repository.appendingPathComponent("Sources/DataParallel/PROTOCOL.md"), encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: opening))
        let end = try XCTUnwrap(text.range(of: "\n```", range: start.upperBound..<text.endIndex))
        return String(text[start.upperBound..<end.lowerBound])
    }

    /// The first ```python block of PROTOCOL.md.
    private func skeleton() throws -> String { try block(startingWith: "```python\n") }

    /// "The settings" shows the settings of a run with the defaults and `--liveness 10`, broken into lines.
    func testTheDocumentedSettingsAreWhatTheCoordinatorSends() throws {
        let documented = try "{\"architecture\"" + block(startingWith: "```\n{\"architecture\"")
        let host = try NetworkHost(
            configuration: TrainingConfiguration(), testSet: TinyDataset.images(count: 10), trainCount: 60_000,
            livenessSeconds: 10)
        XCTAssertEqual(
            documented.replacingOccurrences(of: "\n", with: ""), String(decoding: host.settings(), as: UTF8.self))
    }

    func testTheDocumentedPythonWorkerJoinsAKeyedCoordinator() throws {
        let found = try python3(importing: ["zmq", "numpy"])
        guard let python = found.path else {
            if isContinuousIntegration { return XCTFail("python3 with zmq and numpy: \(found.error)") }
            throw XCTSkip("python3 with zmq and numpy is needed (Cluster/setup.sh --test installs them)")
        }
        let data = try TinyDataset.folder("py-data", seed: 27)
        let root = try TemporaryDirectory("py-worker")
        let script = root.file("worker.py")
        try skeleton().write(to: script, atomically: true, encoding: .utf8)
        let keys = root.file("keys"), other = root.file("other")
        for folder in [keys, other] {
            XCTAssertEqual(try Subprocess.capture([Products.mnist.path, "keygen", folder.path], timeout: 30).status, 0)
        }
        // The stranger's folder: the real coordinator.public, a worker key the coordinator does not know.
        try FileManager.default.removeItem(at: other.appendingPathComponent("coordinator.public"))
        try FileManager.default.copyItem(
            at: keys.appendingPathComponent("coordinator.public"),
            to: other.appendingPathComponent("coordinator.public"))

        let endpoint = "tcp://127.0.0.1:\(try freeLoopbackPort())"
        let coordinator = try WatchedProcess(
            Products.mnist,
            [
                "coordinator", "--bind", endpoint, "--workers", "1", "--keys", keys.path, "--data", data.url.path,
                "--epochs", "1", "--batch-size", "64", "--output", root.file("model.safetensors").path,
                "--join-timeout", "60",
            ])
        defer { coordinator.kill(SIGKILL) }
        XCTAssertNotNil(coordinator.waitForLine(containing: "listening", seconds: 60), coordinator.output)

        let refused = try Subprocess.capture(
            [python, script.path, endpoint, other.path, "py-stranger"], timeout: 60)
        XCTAssertNotEqual(refused.status, 0, refused.standardError)
        XCTAssertTrue(refused.standardError.contains("refused our key"), refused.standardError)

        let worker = try WatchedProcess(
            URL(fileURLWithPath: "/usr/bin/env"), [python, script.path, endpoint, keys.path, "py-worker"])
        defer { worker.kill(SIGKILL) }
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "training started", and: "py-worker", seconds: 60),
            "coordinator: \(coordinator.output)\nworker: \(worker.output)")
        XCTAssertFalse(coordinator.output.contains("py-stranger"), "the stranger got past the handshake")
        XCTAssertTrue(worker.wait(seconds: 60), worker.output)
        XCTAssertTrue(worker.output.contains("NotImplementedError"), "it stops at its first gradient: \(worker.output)")
    }
}
