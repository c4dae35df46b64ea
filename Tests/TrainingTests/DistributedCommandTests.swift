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
        let port = try freeLoopbackPort()
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
            try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 0).folded().parameterCount)
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
        let port = try freeLoopbackPort()
        let result = try Subprocess.capture(
            [
                "/bin/bash", Self.repository.appendingPathComponent("Cluster/ssh.sh").path, hostfile.path,
                "--data", data.url.path, "--epochs", "1", "--batch-size", "96", "--output", model.path,
            ],
            environment: [
                "MNIST_SSH": "\(fakeSSH.path) -o BatchMode=yes", "MNIST_LOCAL_BIN": Products.mnist.path,
                "MNIST_PORT": "\(port)", "MNIST_ADVERTISE": "127.0.0.1",
                "MNIST_KEYS": output.file("keys").path, "MNIST_REMOTE_KEYS": output.file("remote-keys").path,
            ], timeout: 300)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardError.contains("joined 3 of 3"), result.standardError)
        XCTAssertTrue(result.standardError.contains("all 7 steps completed"), result.standardError)
        XCTAssertNoThrow(try Network.load(from: model))
        let lines = try String(contentsOf: calls, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.filter { $0.hasSuffix(" exec") }.sorted(), ["alpha exec", "alpha exec", "beta exec"])
        XCTAssertEqual(lines.filter { $0.hasSuffix(" pkill") }.sorted(), ["alpha pkill", "beta pkill"])
        // Each host got the coordinator's public key and the worker secret, not the coordinator's secret.
        let remote = output.file("remote-keys")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: remote.path).sorted(),
            ["coordinator.public", "worker.secret"])
        XCTAssertEqual(
            try Data(contentsOf: remote.appendingPathComponent("worker.secret")),
            try Data(contentsOf: output.file("keys").appendingPathComponent("worker.secret")))
        XCTAssertTrue(result.standardError.contains("CURVE"), "the coordinator uses the keys: \(result.standardError)")
        let left = try Subprocess.capture(
            ["/usr/bin/pgrep", "-f", "mnist worker --connect tcp://127.0.0.1:\(port)"], timeout: 30)
        XCTAssertEqual(left.standardOutput, "", "workers left running")
    }

    /// The fault drill over real processes and tcp: three workers; one is killed mid-epoch, one
    /// is stopped (SIGSTOP) for longer than the liveness window and then let go, a replacement joins;
    /// then the coordinator is killed and started again with the same command. The run ends with exit
    /// 0 and the model file of a single-process run with the same seed, byte for byte.
    func testWorkersAndTheCoordinatorFailAndTheModelFileIsTheUndisturbedOne() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-faults")
        let model = output.file("model.safetensors"), single = output.file("single.safetensors")
        let common = [
            "--data", data.url.path, "--epochs", "40", "--batch-size", "128", "--seed", "3", "--threads", "1",
        ]
        let reference = try Subprocess.capture(
            [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 600)
        XCTAssertEqual(reference.status, 0, reference.standardError)

        let port = try freeLoopbackPort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinatorArguments =
            ["coordinator", "--bind", endpoint, "--workers", "3", "--liveness", "2", "--checkpoint-every", "4"]
            + common + ["--output", model.path, "--verbose"]
        var coordinator = try WatchedProcess(Products.mnist, coordinatorArguments)
        func worker(_ name: String) throws -> WatchedProcess {
            try WatchedProcess(
                Products.mnist,
                ["worker", "--connect", endpoint, "--name", name, "--threads", "1", "--reconnect-timeout", "120"])
        }
        var workers = try (0..<3).map { try worker("drill-\($0)") }
        defer { for process in workers + [coordinator] { process.kill(SIGKILL) } }

        func waitForStep(_ step: Int, _ what: String) throws {
            XCTAssertNotNil(
                coordinator.waitForLine(containing: "step \(step) (epoch", seconds: 120),
                "no step \(step) \(what): \(coordinator.output)")
        }
        try waitForStep(12, "before the first fault")
        workers[0].kill(SIGKILL)  // Mid-epoch (epochs are 5 steps).
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "\"drill-0\"", and: "died", seconds: 30), coordinator.output)
        workers[1].kill(SIGSTOP)
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "\"drill-1\"", and: "died", seconds: 30), coordinator.output)
        workers[1].kill(SIGCONT)
        workers.append(try worker("drill-3"))
        XCTAssertNotNil(
            coordinator.waitForLine(containing: "\"drill-3\"", and: "joined", seconds: 30), coordinator.output)
        let beforeRestart = coordinator.lastStep() + 6
        try waitForStep(beforeRestart, "after the replacement joined")
        coordinator.kill(SIGKILL)
        XCTAssertTrue(coordinator.wait(seconds: 10))
        let firstLog = coordinator.output
        coordinator = try WatchedProcess(Products.mnist, coordinatorArguments)
        XCTAssertTrue(coordinator.wait(seconds: 300), "the restarted coordinator did not finish: \(coordinator.output)")
        XCTAssertEqual(coordinator.status, 0, coordinator.output)
        XCTAssertTrue(coordinator.output.contains("continuing from the checkpoint"), coordinator.output)
        XCTAssertTrue(firstLog.contains("shares are"), "membership changes are logged: \(firstLog)")
        XCTAssertEqual(try Data(contentsOf: model).sha256Hex, try Data(contentsOf: single).sha256Hex)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: Checkpoint.defaultURL(forOutput: model).path),
            "a finished run removes its checkpoint")
        for process in workers.dropFirst() {
            XCTAssertTrue(process.wait(seconds: 30), "a worker did not exit: \(process.output)")
            XCTAssertEqual(process.status, 0, "a worker told the run is finished exits 0: \(process.output)")
        }
    }

    /// Workers started 0 to 16 s before their coordinator (through several of their reconnects, whose
    /// stale sockets may still deliver a hello) all join, and none is refused.
    func testWorkersStartedBeforeTheCoordinatorAllJoin() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-early")
        let model = output.file("model.safetensors")
        let port = try freeLoopbackPort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        var workers: [WatchedProcess] = []
        defer { for worker in workers { worker.kill(SIGKILL) } }
        // Started 16 s, 8.5 s and 0 s before the coordinator.
        for (index, pause) in [7.5, 8.5, 0].enumerated() {
            workers.append(
                try WatchedProcess(
                    Products.mnist, ["worker", "--connect", endpoint, "--name", "early-\(index)", "--threads", "1"]))
            Thread.sleep(forTimeInterval: pause)
        }
        let coordinator = try Subprocess.capture(
            [
                Products.mnist.path, "coordinator", "--bind", endpoint, "--workers", "3", "--data", data.url.path,
                "--epochs", "1", "--batch-size", "128", "--output", model.path,
            ], timeout: 300)
        XCTAssertEqual(coordinator.status, 0, coordinator.standardError)
        XCTAssertTrue(coordinator.standardError.contains("joined 3 of 3"), coordinator.standardError)
        XCTAssertFalse(coordinator.standardError.contains("refused"), coordinator.standardError)
        for worker in workers {
            XCTAssertTrue(worker.wait(seconds: 30), worker.output)
            XCTAssertEqual(worker.status, 0, worker.output)
        }
    }

    /// An endpoint whose port is out of range, or that has none, is refused before anything starts
    /// (`tcp://*:99999` used to listen on some other port).
    func testEndpointsAreValidated() throws {
        for (command, flag, endpoint) in [
            ("coordinator", "--bind", "tcp://*:99999"), ("coordinator", "--bind", "tcp://*:0"),
            ("worker", "--connect", "tcp://host:port"), ("worker", "--connect", "tcp://host"),
        ] {
            var arguments = [Products.mnist.path, command, flag, endpoint]
            if command == "coordinator" { arguments += ["--workers", "1"] }
            let result = try Subprocess.capture(arguments, timeout: 30)
            XCTAssertEqual(result.status, 64, "\(command) \(flag) \(endpoint): \(result.standardError)")
            XCTAssertTrue(result.standardError.contains("\(flag): '\(endpoint)'"), result.standardError)
        }
    }

    /// Ctrl-C on a coordinator keeps a checkpoint, leaves an existing model file alone, exits 130, and
    /// the same command continues to the undisturbed model file.
    func testAnInterruptedCoordinatorNeverReplacesAModelAndContinues() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("dist-interrupt")
        let model = output.file("model.safetensors"), single = output.file("single.safetensors")
        let common = ["--data", data.url.path, "--epochs", "30", "--batch-size", "128", "--seed", "4"]
        let reference = try Subprocess.capture(
            [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 600)
        XCTAssertEqual(reference.status, 0, reference.standardError)
        try Data("a good model".utf8).write(to: model)
        let arguments = ["train", "--workers", "2", "--output", model.path, "--verbose"] + common
        let first = try WatchedProcess(Products.mnist, arguments)
        defer { first.kill(SIGKILL) }
        XCTAssertNotNil(first.waitForLine(containing: "step 7 (epoch", seconds: 120), first.output)
        first.kill(SIGINT)
        XCTAssertTrue(first.wait(seconds: 30))
        XCTAssertEqual(first.status, 130, first.output)
        XCTAssertTrue(first.output.contains("the same command continues the run"), first.output)
        XCTAssertEqual(try String(contentsOf: model, encoding: .utf8), "a good model", "the model file was replaced")
        let second = try Subprocess.capture([Products.mnist.path] + arguments, timeout: 600)
        XCTAssertEqual(second.status, 0, second.standardError)
        XCTAssertEqual(try Data(contentsOf: model).sha256Hex, try Data(contentsOf: single).sha256Hex)
    }
}
