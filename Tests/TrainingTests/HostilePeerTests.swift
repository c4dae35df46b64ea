// A coordinator without keys (loopback) under the attacks of the issue "Hostile networks", made by a
// peer in this process over real sockets while a real worker waits to train: hellos with new sessions
// from a socket that never reads (each used to cost a copy of the shard), peers that choose the routing
// id libzmq gives the next anonymous peer (used to abort the coordinator), frames whose header claims
// 4 GiB, a flood of junk (used to write a warning line per message), and, once training runs, seeded
// random and mutated protocol messages from several sockets. The run must end with the model file of
// the undisturbed run, byte for byte, the coordinator's peak memory under a stated bound, and a log of
// bounded length.
import DataParallel
import Foundation
import Host
import MNIST
import TestSupport
import XCTest
import ZeroMQ

final class HostilePeerTests: XCTestCase {
    /// The bound on the coordinator's peak resident memory with a full-size (60,000-image) training set.
    static let peakMemoryBoundMegabytes = 600

    func testHostilePeersNeitherCrashNorStarveNorPoisonTheRun() throws {
        let data = try TemporaryDirectory("hostile-data")
        try TinyDataset.write(
            train: TinyDataset.images(count: 60_000, seed: 31), test: TinyDataset.images(count: 100, seed: 32),
            to: data.url)
        let output = try TemporaryDirectory("hostile-out")
        let common = [
            "--data", data.url.path, "--epochs", "1", "--batch-size", "2048", "--seed", "6", "--threads", "1",
        ]
        let single = output.file("single.safetensors"), model = output.file("model.safetensors")
        let reference = try Subprocess.capture(
            [Products.mnist.path, "train"] + common + ["--output", single.path, "--quiet"], timeout: 600)
        XCTAssertEqual(reference.status, 0, reference.standardError)

        let port = try freeLoopbackPort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = try WatchedProcess(
            Products.mnist,
            ["coordinator", "--bind", endpoint, "--workers", "1", "--liveness", "2", "--output", model.path]
                + common)
        defer { coordinator.kill(SIGKILL) }
        XCTAssertNotNil(coordinator.waitForLine(containing: "listening", seconds: 60), coordinator.output)
        var peak = 0
        func samplePeak() { peak = max(peak, Self.peakResidentMegabytes(pid: coordinator.pid)) }

        let context = try Context()
        // 1. The squatter takes the only slot, then says hello with a new session again and again for
        // 6 s without reading a byte (its queue holds one message; the rest stays on the coordinator).
        let squatter = try context.makeSocket(.dealer)
        try squatter.setReceiveHighWaterMark(1)
        try squatter.connect(endpoint)
        // 2. Peers that take the ids libzmq would give the next anonymous peers, then anonymous peers.
        var others: [Socket] = []
        for guess in UInt32(0x6b8b_4567)..<UInt32(0x6b8b_4567 + 4) {
            let socket = try context.makeSocket(.dealer)
            try socket.setRoutingID([0] + withUnsafeBytes(of: guess.bigEndian, Array.init))
            try socket.connect(endpoint)
            try socket.send([[0xde, 0xad]])
            others.append(socket)
        }
        for _ in 0..<4 {
            let socket = try context.makeSocket(.dealer)
            try socket.connect(endpoint)
            try socket.send([[0xbe, 0xef]])
            others.append(socket)
        }
        // 3. Three connections whose first frame claims 4 GiB.
        let giants = try (0..<3).map { _ in try Self.rawConnectionClaimingHugeFrame(port: port) }
        defer { giants.forEach { close($0) } }
        // 4. A junk flood from one socket.
        let flooder = try context.makeSocket(.dealer)
        try flooder.connect(endpoint)
        var random = TestGenerator(seed: 99)
        let start = Date()
        var session: UInt64 = 5 << 16
        var junkSent = 0
        while Date().timeIntervalSince(start) < 6 {
            session += 1
            let hello = Message.hello(
                protocolVersion: ProtocolInfo.version, workerName: "squatter", threads: 1, session: session)
            _ = try squatter.send(hello.encode().map(Frame.init), wait: false)
            for _ in 0..<50 {
                let frames = (0..<Int.random(in: 1...4, using: &random)).map { _ in
                    (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
                if try flooder.send(frames.map(Frame.init), wait: false) { junkSent += 1 }
            }
            samplePeak()
        }
        XCTAssertGreaterThan(junkSent, 1000)
        XCTAssertEqual(coordinator.status, -1, "the coordinator died: \(coordinator.output)")
        squatter.close()
        flooder.close()

        // The real worker: a spare until the silent squatter is declared dead, then it trains.
        let worker = try WatchedProcess(
            Products.mnist, ["worker", "--connect", endpoint, "--name", "real", "--threads", "1"])
        defer { worker.kill(SIGKILL) }
        XCTAssertNotNil(coordinator.waitForLine(containing: "training started", seconds: 120), coordinator.output)

        // 5. While it trains: seeded random and mutated protocol messages from five sockets.
        let fuzzers = try (0..<5).map { _ in
            let socket = try context.makeSocket(.dealer)
            try socket.setReceiveHighWaterMark(4)
            try socket.connect(endpoint)
            return socket
        }
        var fuzzed = 0
        let fuzzStart = Date()
        while Date().timeIntervalSince(fuzzStart) < 4, coordinator.status == -1 {
            for socket in fuzzers {
                let frames = Self.fuzzedMessage(using: &random)
                if try socket.send(frames.map(Frame.init), wait: false) { fuzzed += 1 }
                while try socket.receive() != nil {}
            }
            samplePeak()
        }
        print("sent \(junkSent) junk and \(fuzzed) fuzzed messages")
        while coordinator.status == -1 && !coordinator.wait(seconds: 0.5) { samplePeak() }
        XCTAssertEqual(coordinator.status, 0, coordinator.output)
        XCTAssertEqual(try Data(contentsOf: model).sha256Hex, try Data(contentsOf: single).sha256Hex)
        print("coordinator peak resident memory: \(peak) MB (bound \(Self.peakMemoryBoundMegabytes) MB)")
        XCTAssertGreaterThan(peak, 0, "the peak was read")
        XCTAssertLessThan(peak, Self.peakMemoryBoundMegabytes)
        let warnings = coordinator.output.split(separator: "\n").filter { $0.hasPrefix("warning:") }
        XCTAssertLessThan(warnings.count, 60, "warnings are limited per peer: \(warnings.suffix(20))")
        XCTAssertTrue(worker.wait(seconds: 30), worker.output)
        XCTAssertEqual(worker.status, 0, worker.output)
    }

    /// VmHWM of a process, in MB (0 if it cannot be read).
    static func peakResidentMegabytes(pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }

    /// A tcp connection that speaks ZMTP 3.0 (NULL mechanism, a DEALER) and starts a frame whose header
    /// claims 4 GiB, sending 1 MB of it.
    static func rawConnectionClaimingHugeFrame(port: Int) throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard descriptor >= 0, connected else { throw POSIXError(.ECONNREFUSED) }
        var greeting: [UInt8] = [0xff] + [UInt8](repeating: 0, count: 8) + [0x7f, 3, 0]
        greeting += Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0] + [UInt8](repeating: 0, count: 31)
        let ready: [UInt8] =
            [5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 6] + Array("DEALER".utf8)
        let header: [UInt8] = [0x02] + withUnsafeBytes(of: UInt64(1 << 32).bigEndian, Array.init)
        let bytes = greeting + [0x04, UInt8(ready.count)] + ready + header + [UInt8](repeating: 7, count: 1 << 20)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes {
                send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard written > 0 else { break }  // The coordinator dropped the connection: what it should do.
            offset += written
        }
        return descriptor
    }

    /// A protocol message of a random kind with random fields, encoded, then possibly mutated (bytes
    /// flipped, frames cut, dropped or added).
    static func fuzzedMessage(using random: inout TestGenerator) -> [[UInt8]] {
        func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }
        let step = Int.random(in: 0...40, using: &random)
        let message: Message
        switch Int.random(in: 0...5, using: &random) {
        case 0:
            message = .hello(
                protocolVersion: ProtocolInfo.version, workerName: "fuzz", threads: 1,
                session: UInt64.random(in: 0...UInt64.max, using: &random))
        case 1: message = .ready(firstKey: Int.random(in: 0...70_000, using: &random), sampleCount: 29)
        case 2: message = .heartbeat
        case 3: message = .goodbye(reason: "fuzz")
        default:
            let count = [0, 1, 7, 108_618].randomElement(using: &random) ?? 0
            let gradient = (0..<count).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &random)) }
            message = .gradient(
                GradientReport(
                    step: step,
                    pieces: [
                        GradientPiece(
                            blocks: 0..<Int.random(in: 1...3, using: &random), sampleCount: 2048, correctCount: 9,
                            lossSum: .nan, gradient: gradient)
                    ]))
        }
        var frames = message.encode()
        for _ in 0..<Int.random(in: 0...3, using: &random) where !frames.isEmpty {
            let index = Int.random(in: frames.indices, using: &random)
            switch Int.random(in: 0...3, using: &random) {
            case 0 where !frames[index].isEmpty:
                frames[index][Int.random(in: frames[index].indices, using: &random)] ^= UInt8.random(
                    in: 1...255, using: &random)
            case 1: frames[index] = Array(frames[index].prefix(Int.random(in: 0...frames[index].count, using: &random)))
            case 2: frames.remove(at: index)
            default: frames.insert(bytes(Int.random(in: 0...32, using: &random)), at: index)
            }
        }
        return frames.isEmpty ? [[]] : frames
    }
}
