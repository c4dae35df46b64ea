// Distributed training as users run it: `mnist train --workers N` (worker processes on this machine over
// tcp://127.0.0.1), a coordinator and workers on separate network hosts (Linux network namespaces
// joined by veth pairs, Cluster/netns.sh), and the SSH launcher (Cluster/ssh.sh) with a stand-in for
// ssh that runs the remote command here. Small datasets made here keep each run to seconds.
import ConvNet
import Foundation
import Host
import MNIST
import TestSupport
import Training
import XCTest

final class DistributedCommandTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A small unpinned dataset: 640 training and 160 test images.
    private func smallDataset() throws -> TemporaryDirectory { try TinyDataset.folder("dist-data", seed: 11) }

    /// A run is a pure function of data, configuration and seed: the same model file, byte for byte,
    /// in one process with 2 or 1 threads, with 1 or 3 local worker processes, and from a coordinator
    /// with two separately started tcp workers of different thread counts. Another seed differs.
    func testEveryWorkerAndThreadCountWritesTheSameModelFile() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-out")
        // Batches of 128: four micro-batches of 32, so up to four workers.
        let common = ["--data", data.url.path, "--epochs", "2", "--batch-size", "128", "--quiet"]
        func train(_ name: String, _ options: [String], seed: Int = 7) throws -> String {
            let path = output.file(name).path
            let result = try Subprocess.capture(
                [Products.mnist.path, "train"] + common + options + ["--seed", "\(seed)", "--output", path],
                timeout: 300)
            XCTAssertEqual(result.status, 0, "\(options): \(result.standardError)")
            return try Data(contentsOf: URL(fileURLWithPath: path)).sha256Hex
        }
        let reference = try train("single.safetensors", ["--threads", "2"])
        var files = [
            "--threads 1": try train("threads1.safetensors", ["--threads", "1"]),
            "--workers 1": try train("workers1.safetensors", ["--workers", "1"]),
            "--workers 3": try train("workers3.safetensors", ["--workers", "3", "--threads", "3"]),
        ]

        // A coordinator and two workers started separately over tcp, with 2 and 1 threads.
        let model = output.file("tcp.safetensors")
        let port = 20_000 + Int((getpid() + 3_331) % 20_000)
        let coordinator = Process()
        coordinator.executableURL = Products.mnist
        coordinator.arguments =
            [
                "coordinator", "--bind", "tcp://127.0.0.1:\(port)", "--workers", "2", "--seed", "7", "--output",
                model.path,
            ]
            + common
        coordinator.standardError = FileHandle.nullDevice
        coordinator.standardOutput = FileHandle.nullDevice
        try coordinator.run()
        let workers = try [2, 1].map { threads -> Process in
            let worker = Process()
            worker.executableURL = Products.mnist
            worker.arguments = ["worker", "--connect", "tcp://127.0.0.1:\(port)", "--threads", "\(threads)", "--quiet"]
            worker.standardError = FileHandle.nullDevice
            try worker.run()
            return worker
        }
        coordinator.waitUntilExit()
        workers.forEach { $0.waitUntilExit() }
        XCTAssertEqual(coordinator.terminationStatus, 0)
        XCTAssertEqual(workers.map(\.terminationStatus), [0, 0])
        files["coordinator + 2 tcp workers"] = try Data(contentsOf: model).sha256Hex

        print("SHA-256 of every mode: \(reference)")
        for (mode, hash) in files.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(hash, reference, "\(mode) wrote another model file")
        }
        XCTAssertNotEqual(try train("other.safetensors", ["--workers", "2"], seed: 8), reference, "another seed")
        XCTAssertNoThrow(try Network.load(from: output.file("workers3.safetensors")))
    }

    func testCoordinatorAndWorkersOnSeparateNetworkHosts() throws {
        guard getuid() == 0 else {
            if isContinuousIntegration { return XCTFail("CI runs as root; network namespaces need root") }
            throw XCTSkip("network namespaces need root")
        }
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-netns")
        let model = output.file("model.safetensors")
        let result = try Subprocess.capture(
            [
                "/bin/bash", Self.repository.appendingPathComponent("Cluster/netns.sh").path, "2", model.path,
                "--data", data.url.path, "--epochs", "1", "--batch-size", "64",
            ],
            environment: ["MNIST_BIN": Products.mnist.path], timeout: 300)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardError.contains("joined 2 of 2"), result.standardError)
        for name in ["netns-w0", "netns-w1"] {
            XCTAssertTrue(result.standardError.contains(name), "\(name) did not join: \(result.standardError)")
        }
        XCTAssertTrue(result.standardError.contains("all 10 steps completed"), result.standardError)
        let (network, metadata) = try Network.load(from: model)
        XCTAssertEqual(
            network.parameterCount,
            try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 0).parameterCount)
        XCTAssertNotNil(metadata[ModelMetadataKey.testAccuracy])
    }

    /// Cluster/ssh.sh reads the hostfile (comments, blank lines, slots), starts one worker per slot
    /// through the ssh command, runs the coordinator here, and on exit asks every host to stop its
    /// workers. The stand-in for ssh records each host and runs the command on this machine.
    func testSSHLauncherStartsAWorkerPerSlotAndStopsThemAtExit() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-ssh")
        let hostfile = output.file("hosts.txt"), calls = output.file("calls.txt"), model = output.file("m.safetensors")
        try "# two hosts, three workers\nalpha slots=2\n\nbeta\n".write(to: hostfile, atomically: true, encoding: .utf8)
        let fakeSSH = output.file("fake-ssh")
        try """
        #!/usr/bin/env bash
        while [[ "$1" == -* ]]; do case "$1" in -o|-p|-i) shift 2 ;; *) shift ;; esac; done
        echo "$1 ${2%% *}" >>'\(calls.path)'
        shift
        exec bash -c "$*"

        """.write(to: fakeSSH, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(fakeSSH.path, 0o755), 0)
        let port = 20_000 + Int((getpid() + 7_919) % 20_000)
        let result = try Subprocess.capture(
            [
                "/bin/bash", Self.repository.appendingPathComponent("Cluster/ssh.sh").path, hostfile.path,
                "--data", data.url.path, "--epochs", "1", "--batch-size", "96", "--output", model.path,
            ],
            environment: [
                "MNIST_SSH": "\(fakeSSH.path) -o BatchMode=yes", "MNIST_LOCAL_BIN": Products.mnist.path,
                "MNIST_PORT": "\(port)", "MNIST_ADVERTISE": "127.0.0.1",
            ], timeout: 300)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardError.contains("joined 3 of 3"), result.standardError)
        XCTAssertTrue(result.standardError.contains("all 7 steps completed"), result.standardError)
        XCTAssertNoThrow(try Network.load(from: model))
        let lines = try String(contentsOf: calls, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.filter { $0.hasSuffix(" exec") }.sorted(), ["alpha exec", "alpha exec", "beta exec"])
        XCTAssertEqual(lines.filter { $0.hasSuffix(" pkill") }.sorted(), ["alpha pkill", "beta pkill"])
        let left = try Subprocess.capture(
            ["/usr/bin/pgrep", "-f", "mnist worker --connect tcp://127.0.0.1:\(port)"], timeout: 30)
        XCTAssertEqual(left.standardOutput, "", "workers left running")
    }

    func testAWorkerThatDiesStopsTheRunWithItsNameAndKeepsTheModel() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-death")
        let model = output.file("model.safetensors")
        let coordinator = Process()
        coordinator.executableURL = Products.mnist
        let port = 20_000 + Int(getpid() % 20_000)
        coordinator.arguments = [
            "coordinator", "--bind", "tcp://127.0.0.1:\(port)", "--workers", "2", "--data", data.url.path,
            "--epochs", "200", "--batch-size", "64", "--liveness", "2", "--output", model.path,
        ]
        let errors = Pipe()
        coordinator.standardError = errors
        coordinator.standardOutput = FileHandle.nullDevice
        try coordinator.run()
        let workers = try (0..<2).map { index -> Process in
            let worker = Process()
            worker.executableURL = Products.mnist
            worker.arguments = [
                "worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "victim-\(index)", "--threads", "1",
            ]
            worker.standardError = FileHandle.nullDevice
            try worker.run()
            return worker
        }
        Thread.sleep(forTimeInterval: 4)
        kill(workers[0].processIdentifier, SIGKILL)  // no goodbye: only heartbeats can tell
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            coordinator.waitUntilExit()
            finished.signal()
        }
        if finished.wait(timeout: .now() + 60) == .timedOut {
            coordinator.terminate()
            XCTFail("the coordinator did not notice the dead worker within 60 s")
        }
        workers[1].waitUntilExit()
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(coordinator.terminationStatus, 1, log)
        XCTAssertTrue(log.contains("victim-0") && log.contains("died at step"), log)
        XCTAssertTrue(log.contains("is saved to \(model.path)"), log)
        XCTAssertNoThrow(try Network.load(from: model))
        XCTAssertEqual(workers[1].terminationStatus, 0, "the surviving worker is told to exit")
    }
}
