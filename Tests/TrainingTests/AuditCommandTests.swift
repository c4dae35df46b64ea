// `--audit` with real processes over tcp: an honest worker process and, in this process, a worker
// node whose gradient computer nudges one value of one answer. The audit catches it, names it and
// evicts it, and the model file is the single-process one, byte for byte.
import DataParallel
import Foundation
import Host
import TestSupport
import Training
import XCTest

final class AuditCommandTests: XCTestCase {
    /// A worker's computer that answers one step with its first gradient value off by one (finite, and
    /// large enough to change the model: a one-ulp change can vanish in the sums).
    final class LyingComputer: GradientComputer {
        let honest: NetworkGradientComputer
        let lieAtStep: Int
        init(_ honest: NetworkGradientComputer, lieAtStep: Int) {
            self.honest = honest
            self.lieAtStep = lieAtStep
        }
        var coordinatorLivenessSeconds: Double? { honest.coordinatorLivenessSeconds }
        func add(_ shard: Shard) { honest.add(shard) }
        func gradient(for assignment: StepAssignment) -> GradientReport {
            var report = honest.gradient(for: assignment)
            if assignment.step == lieAtStep, !report.pieces.isEmpty, !report.pieces[0].gradient.isEmpty {
                report.pieces[0].gradient[0] += 1
            }
            return report
        }
    }

    func testAWorkerThatChangesOneValueIsCaughtAndTheModelIsTheUndisturbedOne() throws {
        let data = try TinyDataset.folder("audit-data", seed: 41)
        let output = try TemporaryDirectory("audit-out")
        let common = ["--data", data.url.path, "--epochs", "3", "--batch-size", "128", "--seed", "9", "--threads", "1"]
        let single = output.file("single.safetensors"), model = output.file("model.safetensors")
        let reference = try Subprocess.capture(
            [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.standardError)

        let endpoint = "tcp://127.0.0.1:\(try freeLoopbackPort())"
        let coordinator = try WatchedProcess(
            Products.mnist,
            ["coordinator", "--bind", endpoint, "--workers", "2", "--audit", "1", "--output", model.path] + common)
        defer { coordinator.kill(SIGKILL) }
        let honest = try WatchedProcess(
            Products.mnist, ["worker", "--connect", endpoint, "--name", "honest", "--threads", "1"])
        defer { honest.kill(SIGKILL) }
        let liar = WorkerNode(
            configuration: WorkerNodeConfiguration(endpoint: endpoint, name: "liar"),
            makeGradientComputer: { settings, shard in
                LyingComputer(try NetworkGradientComputer(settings: settings, shard: shard), lieAtStep: 7)
            })
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var liarOutcome: NodeOutcome?
        Thread.detachNewThread {
            liarOutcome = liar.run()
            done.signal()
        }
        XCTAssertTrue(coordinator.wait(seconds: 300), coordinator.output)
        XCTAssertEqual(coordinator.status, 0, coordinator.output)
        let eviction = coordinator.output.split(separator: "\n").first {
            $0.contains("\"liar\"") && $0.contains("audit")
        }
        XCTAssertNotNil(eviction, "the liar was not named: \(coordinator.output)")
        XCTAssertTrue(eviction?.contains("step 7") ?? false, String(eviction ?? ""))
        let honestEvicted = coordinator.output.split(separator: "\n").contains {
            $0.contains("\"honest\"") && $0.contains("evicted")
        }
        XCTAssertFalse(honestEvicted, coordinator.output)
        XCTAssertTrue(coordinator.output.contains("disagreed"), coordinator.output)
        XCTAssertEqual(try Data(contentsOf: model).sha256Hex, try Data(contentsOf: single).sha256Hex)
        liar.requestStop(reason: "test over")
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertFalse(liarOutcome?.isFinished ?? true, "the evicted liar is not told the run finished")
        XCTAssertTrue(honest.wait(seconds: 30), honest.output)
        XCTAssertEqual(honest.status, 0, honest.output)
    }

    /// With keys, an evicted worker's own key is refused at the handshake for the rest of the run: a new
    /// process holding it does not get back in. The model is still the undisturbed one.
    func testAnEvictedWorkersOwnKeyIsRefusedFromThenOn() throws {
        let data = try TinyDataset.folder("audit-key-data", seed: 43)
        let output = try TemporaryDirectory("audit-key-out")
        let keys = output.file("keys")
        let keygen = try Subprocess.capture(
            [Products.mnist.path, "keygen", keys.path, "--worker", "liar"], timeout: 30)
        XCTAssertEqual(keygen.status, 0, keygen.standardError)
        let common = [
            "--data", data.url.path, "--epochs", "12", "--batch-size", "128", "--seed", "9", "--threads", "1",
        ]
        let single = output.file("single.safetensors"), model = output.file("model.safetensors")
        let reference = try Subprocess.capture(
            [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.standardError)

        let endpoint = "tcp://127.0.0.1:\(try freeLoopbackPort())"
        let coordinator = try WatchedProcess(
            Products.mnist,
            [
                "coordinator", "--bind", endpoint, "--workers", "2", "--audit", "1", "--keys", keys.path, "--output",
                model.path,
            ] + common)
        defer { coordinator.kill(SIGKILL) }
        let honest = try WatchedProcess(
            Products.mnist,
            ["worker", "--connect", endpoint, "--name", "honest", "--threads", "1", "--keys", keys.path])
        defer { honest.kill(SIGKILL) }
        let liarKeys = try KeyFolder(url: keys).workerSecurity(name: "liar")
        XCTAssertEqual(liarKeys.keyName, "worker-liar")
        func liar() -> WorkerNode {
            var configuration = WorkerNodeConfiguration(endpoint: endpoint, name: "liar")
            configuration.security = liarKeys
            return WorkerNode(
                configuration: configuration,
                makeGradientComputer: { settings, shard in
                    LyingComputer(try NetworkGradientComputer(settings: settings, shard: shard), lieAtStep: 7)
                })
        }
        let first = liar()
        Thread.detachNewThread { _ = first.run() }
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "\"liar\"", and: "[key worker-liar]", seconds: 120), coordinator.output)
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "evicted", and: "worker-liar", seconds: 120), coordinator.output)
        first.requestStop(reason: "test over")
        let second = liar().run()
        XCTAssertFalse(second.isFinished)
        XCTAssertTrue(second.reason.contains("refused the key worker-liar"), second.reason)
        XCTAssertTrue(coordinator.wait(seconds: 300), coordinator.output)
        XCTAssertEqual(coordinator.status, 0, coordinator.output)
        XCTAssertTrue(
            coordinator.output.contains("its key worker-liar belongs to a worker evicted at step 7"), coordinator.output
        )
        XCTAssertEqual(try Data(contentsOf: model).sha256Hex, try Data(contentsOf: single).sha256Hex)
        XCTAssertTrue(honest.wait(seconds: 30), honest.output)
        XCTAssertEqual(honest.status, 0, honest.output)
    }
}
