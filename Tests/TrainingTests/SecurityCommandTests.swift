// The security layer as users and attackers meet it, with real processes over real sockets:
// `mnist keygen`, a coordinator with `--keys` that lets in only workers holding an allowed key (the
// others are refused at the handshake and say why), traffic that carries no plaintext image byte,
// the refusal to listen beyond loopback without keys, and a peer that chooses its routing id.
import DataParallel
import Foundation
import Host
import MNIST
import TestSupport
import XCTest
import ZeroMQ

final class SecurityCommandTests: XCTestCase {
    private func keygen(_ folder: URL, _ extra: [String] = []) throws -> Subprocess.Outcome {
        try Subprocess.capture([Products.mnist.path, "keygen", folder.path] + extra, timeout: 30)
    }

    private func mode(_ url: URL) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int) ?? -1
    }

    /// A folder for one worker: coordinator.public from `coordinatorKeys`, worker.secret from `workerKeys`.
    private func workerFolder(_ root: TemporaryDirectory, _ name: String, coordinatorKeys: URL, workerKeys: URL)
        throws -> URL
    {
        let folder = root.file(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: coordinatorKeys.appendingPathComponent("coordinator.public"),
            to: folder.appendingPathComponent("coordinator.public"))
        let secret = folder.appendingPathComponent("worker.secret")
        try FileManager.default.copyItem(at: workerKeys.appendingPathComponent("worker.secret"), to: secret)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secret.path)
        return folder
    }

    func testKeygenWritesPrivateKeysAndNeverReplacesThem() throws {
        let root = try TemporaryDirectory("keygen")
        let keys = root.file("keys")
        let first = try keygen(keys, ["--worker", "gpu-1"])
        XCTAssertEqual(first.status, 0, first.standardError)
        XCTAssertEqual(try mode(keys), 0o700)
        for name in ["coordinator", "worker", "worker-gpu-1"] {
            XCTAssertEqual(try mode(keys.appendingPathComponent("\(name).secret")), 0o600, name)
            XCTAssertEqual(try mode(keys.appendingPathComponent("\(name).public")), 0o644, name)
            let secret = try String(contentsOf: keys.appendingPathComponent("\(name).secret"), encoding: .utf8)
            let publicKey = try String(contentsOf: keys.appendingPathComponent("\(name).public"), encoding: .utf8)
            let pair = try CurveKeyPair(secretKey: secret.trimmingCharacters(in: .newlines))
            XCTAssertEqual(pair.publicKey + "\n", publicKey, "\(name): the public key is the secret's")
        }
        let before = try Data(contentsOf: keys.appendingPathComponent("coordinator.secret"))
        let second = try keygen(keys, ["--worker", "gpu-2"])
        XCTAssertEqual(second.status, 0, second.standardError)
        XCTAssertTrue(second.standardOutput.contains("kept"), second.standardOutput)
        XCTAssertEqual(try Data(contentsOf: keys.appendingPathComponent("coordinator.secret")), before)
        XCTAssertTrue(FileManager.default.fileExists(atPath: keys.appendingPathComponent("worker-gpu-2.secret").path))
        XCTAssertEqual(try keygen(keys, ["--worker", "../escape"]).status, 64)

        // A secret others may read is refused, naming the fix.
        try FileManager.default.setAttributes(
            [.posixPermissions: 0o644], ofItemAtPath: keys.appendingPathComponent("coordinator.secret").path)
        let loose = try Subprocess.capture(
            [Products.mnist.path, "coordinator", "--bind", "tcp://127.0.0.1:1", "--workers", "1", "--keys", keys.path],
            timeout: 30)
        XCTAssertNotEqual(loose.status, 0)
        XCTAssertTrue(loose.standardError.contains("chmod 600"), loose.standardError)
    }

    /// Listening beyond loopback needs keys, or --insecure said out loud.
    func testANonLoopbackBindNeedsKeysOrInsecure() throws {
        let open = try Subprocess.capture(
            [Products.mnist.path, "coordinator", "--bind", "tcp://*:5555", "--workers", "1"], timeout: 30)
        XCTAssertEqual(open.status, 64, open.standardError)
        XCTAssertTrue(open.standardError.contains("mnist keygen"), open.standardError)
        let both = try Subprocess.capture(
            [
                Products.mnist.path, "coordinator", "--bind", "tcp://*:5555", "--workers", "1", "--keys", "k",
                "--insecure",
            ],
            timeout: 30)
        XCTAssertEqual(both.status, 64, both.standardError)
        XCTAssertTrue(both.standardError.contains("exclude each other"), both.standardError)
        let data = try TinyDataset.folder("sec-insecure", seed: 5)
        // Its output (and the checkpoint a failed run keeps) in a folder of the test's own.
        let output = try TemporaryDirectory("sec-insecure-out")
        let insecure = try Subprocess.capture(
            [
                Products.mnist.path, "coordinator", "--bind", "tcp://*:\(try freeLoopbackPort())", "--workers", "1",
                "--insecure", "--join-timeout", "1", "--data", data.url.path, "--output",
                output.file("model.safetensors").path,
            ], timeout: 60)
        XCTAssertEqual(insecure.status, 1, "it listened, then no worker came: \(insecure.standardError)")
        XCTAssertTrue(insecure.standardError.contains("joined"), insecure.standardError)
    }

    /// With --keys only a worker holding an allowed key joins; one without keys, one whose key is not
    /// allowed, and one with the wrong coordinator key get in no further than the handshake, the first
    /// two exit 1 saying why. The allowed worker trains to the single-process model, and the traffic it
    /// exchanged (read by a relay in between) holds no 64-byte run of any training image, while the
    /// same run without keys shows them in plain sight.
    func testOnlyAllowedWorkersJoinAndNoImageCrossesTheWireInPlaintext() throws {
        let data = try TinyDataset.folder("sec-data", seed: 21)
        let root = try TemporaryDirectory("sec-keys")
        let keys = root.file("keys"), other = root.file("other")
        XCTAssertEqual(try keygen(keys).status, 0)
        XCTAssertEqual(try keygen(other).status, 0)
        let allowed = try workerFolder(root, "allowed", coordinatorKeys: keys, workerKeys: keys)
        let stranger = try workerFolder(root, "stranger", coordinatorKeys: keys, workerKeys: other)
        let misled = try workerFolder(root, "misled", coordinatorKeys: other, workerKeys: keys)
        // Batches of 32: one micro-batch, so each gradient frame is the largest a worker may send.
        let common = ["--data", data.url.path, "--epochs", "2", "--batch-size", "32", "--seed", "5"]
        let single = root.file("single.safetensors")
        XCTAssertEqual(
            try Subprocess.capture(
                [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 300
            ).status, 0)

        /// Runs a coordinator (with `coordinatorOptions`), calls `before` with its port, then runs the
        /// allowed worker through a relay; returns the coordinator's log and the bytes it sent.
        func run(_ coordinatorOptions: [String], workerOptions: [String], model: URL, before: (Int) throws -> Void)
            throws -> (log: String, sent: [UInt8])
        {
            let port = try freeLoopbackPort()
            let coordinator = try WatchedProcess(
                Products.mnist,
                ["coordinator", "--bind", "tcp://127.0.0.1:\(port)", "--workers", "1", "--output", model.path]
                    + common + coordinatorOptions)
            defer { coordinator.kill(SIGKILL) }
            XCTAssertNotNil(coordinator.waitForLine(containing: "listening", seconds: 60), coordinator.output)
            try before(port)
            let relay = try TCPRelay(to: port)
            let worker = try WatchedProcess(
                Products.mnist,
                ["worker", "--connect", "tcp://127.0.0.1:\(relay.port)", "--threads", "1", "--name", "allowed"]
                    + workerOptions)
            defer { worker.kill(SIGKILL) }
            XCTAssertTrue(coordinator.wait(seconds: 300), coordinator.output)
            XCTAssertEqual(coordinator.status, 0, coordinator.output)
            XCTAssertTrue(worker.wait(seconds: 30), worker.output)
            XCTAssertEqual(worker.status, 0, worker.output)
            relay.stop()
            return (coordinator.output, relay.bytesFromServer)
        }

        let secured = root.file("secured.safetensors")
        let (log, encrypted) = try run(["--keys", keys.path], workerOptions: ["--keys", allowed.path], model: secured) {
            port in
            func worker(_ name: String, _ options: [String], timeout: Int = 20) throws -> WatchedProcess {
                try WatchedProcess(
                    Products.mnist,
                    [
                        "worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", name, "--reconnect-timeout",
                        "\(timeout)",
                    ]
                        + options)
            }
            let refused = [
                (try worker("no-keys", []), "requires CURVE keys"),
                (try worker("stranger", ["--keys", stranger.path]), "refused the key worker"),
            ]
            let misled = try worker("misled", ["--keys", misled.path], timeout: 3)
            defer { misled.kill(SIGKILL) }
            for (process, reason) in refused {
                defer { process.kill(SIGKILL) }
                XCTAssertTrue(process.wait(seconds: 60), process.output)
                XCTAssertEqual(process.status, 1, process.output)
                XCTAssertTrue(process.output.contains(reason), process.output)
            }
            XCTAssertTrue(misled.wait(seconds: 60), misled.output)
            XCTAssertEqual(misled.status, 1, misled.output)
        }
        XCTAssertTrue(log.contains("refused a connection from 127.0.0.1"), log)
        let joined = log.split(separator: "\n").first { $0.contains("\"allowed\"") && $0.contains("joined") }
        XCTAssertTrue(joined?.hasSuffix("[key worker]") ?? false, "the join names the key: \(log)")
        for name in ["no-keys", "stranger", "misled"] {
            XCTAssertFalse(log.contains("\"\(name)\""), "\(name) reached the message loop: \(log)")
        }
        XCTAssertEqual(try Data(contentsOf: secured).sha256Hex, try Data(contentsOf: single).sha256Hex)

        let plain = root.file("plain.safetensors")
        let (_, plaintext) = try run([], workerOptions: [], model: plain) { _ in }
        let images = TinyDataset.images(count: 640, seed: 21).pixels
        let windows = (0..<640).map { Array(images[($0 * 784 + 300)..<($0 * 784 + 364)]) }
        /// How many of the windows occur in `bytes` (looked up by their first 8 bytes, then compared).
        func imagesSeen(in bytes: [UInt8]) -> Int {
            var byPrefix: [UInt64: [Int]] = [:]
            for (index, window) in windows.enumerated() {
                byPrefix[window.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, default: []].append(index)
            }
            var seen = Set<Int>()
            bytes.withUnsafeBytes { haystack in
                for offset in 0..<max(0, haystack.count - 63) {
                    guard let candidates = byPrefix[haystack.loadUnaligned(fromByteOffset: offset, as: UInt64.self)]
                    else { continue }
                    for index in candidates where !seen.contains(index) {
                        if windows[index].elementsEqual(haystack[offset..<(offset + 64)]) { seen.insert(index) }
                    }
                }
            }
            return seen.count
        }
        XCTAssertGreaterThan(encrypted.count, 640 * 784, "the training set crossed the relay")
        XCTAssertEqual(imagesSeen(in: encrypted), 0, "training images in plaintext on an encrypted connection")
        XCTAssertEqual(imagesSeen(in: plaintext), 640, "the check finds every image of a run without keys")
    }
}

extension SecurityCommandTests {
    /// Hundreds of connections that hammer a keyed coordinator with hellos while the workers join (in
    /// plaintext, or with a key it does not know) take no slot and cost no shard; the two real workers
    /// join and the run finishes. Refusals are logged, a bounded number of times.
    func testConnectionsWithoutAnAllowedKeyCannotSquatTheSlots() throws {
        let data = try TinyDataset.folder("sec-squat-data", seed: 23)
        let root = try TemporaryDirectory("sec-squat")
        let keys = root.file("keys"), other = root.file("other")
        XCTAssertEqual(try keygen(keys).status, 0)
        XCTAssertEqual(try keygen(other).status, 0)
        let port = try freeLoopbackPort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = try WatchedProcess(
            Products.mnist,
            [
                "coordinator", "--bind", endpoint, "--workers", "2", "--keys", keys.path, "--data", data.url.path,
                "--epochs", "1", "--batch-size", "64", "--output", root.file("model.safetensors").path,
            ])
        defer { coordinator.kill(SIGKILL) }
        XCTAssertNotNil(coordinator.waitForLine(containing: "listening", seconds: 60), coordinator.output)

        let context = try Context()
        let coordinatorKey = try String(
            contentsOf: keys.appendingPathComponent("coordinator.public"), encoding: .utf8
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let strangerKeys = try CurveKeyPair(
            secretKey: try String(contentsOf: other.appendingPathComponent("worker.secret"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        var squatters: [Socket] = []
        for index in 0..<300 {
            let socket = try context.makeSocket(.dealer)
            if index % 3 == 0 { try socket.makeCurveClient(serverPublicKey: coordinatorKey, keyPair: strangerKeys) }
            try socket.connect(endpoint)
            let hello = Message.hello(
                protocolVersion: ProtocolInfo.version, workerName: "squatter-\(index)", threads: 1,
                session: UInt64(index + 1) << 16)
            _ = try socket.send(hello.encode(), wait: false)
            squatters.append(socket)
        }
        let workers = try (0..<2).map { index in
            try WatchedProcess(
                Products.mnist,
                ["worker", "--connect", endpoint, "--keys", keys.path, "--name", "real-\(index)", "--threads", "1"])
        }
        defer { workers.forEach { $0.kill(SIGKILL) } }
        XCTAssertTrue(coordinator.wait(seconds: 120), coordinator.output)
        XCTAssertEqual(coordinator.status, 0, coordinator.output)
        XCTAssertTrue(coordinator.output.contains("joined 2 of 2"), coordinator.output)
        XCTAssertFalse(coordinator.output.contains("squatter"), "a squatter got past the handshake")
        let refusals = coordinator.output.split(separator: "\n").filter { $0.contains("refused a connection") }
        XCTAssertGreaterThan(refusals.count, 0, coordinator.output)
        XCTAssertLessThan(refusals.count, 5, "refusals are logged once per address and window")
        for worker in workers {
            XCTAssertTrue(worker.wait(seconds: 30), worker.output)
            XCTAssertEqual(worker.status, 0, worker.output)
        }
        squatters.forEach { $0.close() }
    }
}

extension SecurityCommandTests {
    /// `mnist train --workers N` listens on an ipc socket of mode 0600 in a folder of mode 0700 that only
    /// this run uses, and removes the folder when it ends.
    func testTheLocalSocketIsPrivate() throws {
        let data = try TinyDataset.folder("sec-ipc-data", seed: 29)
        let temporary = try TemporaryDirectory("sec-ipc-tmp")
        let train = try WatchedProcess(
            Products.mnist,
            [
                "train", "--workers", "1", "--data", data.url.path, "--epochs", "40", "--batch-size", "64",
                "--output", temporary.file("model.safetensors").path, "--verbose",
            ], environment: ["TMPDIR": temporary.url.path])
        defer { train.kill(SIGKILL) }
        XCTAssertNotNil(train.waitForLine(containing: "training started", seconds: 60), train.output)
        let folders = try FileManager.default.contentsOfDirectory(atPath: temporary.url.path)
            .filter { $0.hasPrefix("mnist-train-") }
        XCTAssertEqual(folders.count, 1, "\(folders)")
        let folder = temporary.url.appendingPathComponent(folders.first ?? "")
        var status = stat()
        XCTAssertEqual(stat(folder.path, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o700, "the folder's mode")
        XCTAssertEqual(stat(folder.appendingPathComponent("coordinator.ipc").path, &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(status.st_mode & 0o777, 0o600, "the socket's mode")
        XCTAssertTrue(train.wait(seconds: 300), train.output)
        XCTAssertEqual(train.status, 0, train.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "the folder outlived the run")
    }
}
