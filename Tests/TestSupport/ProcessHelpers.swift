// What the tests that run real processes share: a child process whose output a test can wait on, and a
// loopback port the system reports free.
import Foundation
import Host

/// A child process whose stderr and stdout go to a file that a test can wait on for a line.
public final class WatchedProcess {
    private let process = Process()
    private let log: URL

    /// - Parameter environment: variables added to this process's own.
    public init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        log = FileManager.default.temporaryDirectory.appendingPathComponent("mnist-watched-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardError = handle
        process.standardOutput = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try handle.close()
    }

    deinit { try? FileManager.default.removeItem(at: log) }

    /// Everything the process has written so far.
    public var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The process id.
    public var pid: Int32 { process.processIdentifier }

    /// The exit status, or -1 while the process still runs.
    public var status: Int32 { process.isRunning ? -1 : process.terminationStatus }

    /// The first line holding `text` (and `other`), waiting up to `seconds` for it.
    public func waitForLine(containing text: String, and other: String = "", seconds: Double) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            let lines = output.split(separator: "\n")
            if let line = lines.first(where: { $0.contains(text) && (other.isEmpty || $0.contains(other)) }) {
                return String(line)
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return nil
    }

    /// The highest step the coordinator's log reports completed (-1 before the first).
    public func lastStep() -> Int {
        output.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: "step "), line.contains(" (epoch") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }.max() ?? -1
    }

    public func kill(_ signal: Int32) {
        if process.isRunning { _ = Foundation.kill(process.processIdentifier, signal) }
    }

    /// Waits up to `seconds` for the process to exit; true if it did.
    public func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return !process.isRunning
    }
}

/// A tcp port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed): unlike a port
/// derived from the pid, it cannot be one the system already gave to another connection.
public func freeLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
            bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The first Python that imports every module of `modules`: `python3` on PATH, else Debian's
/// `/usr/bin/python3`, where `Cluster/setup.sh --test` installs python3-zmq and python3-numpy when another
/// python3 (pyenv's, a virtual environment's) comes first on PATH. When none
/// does, its path is nil and the error says why each failed.
public func python3(importing modules: [String]) throws -> (path: String?, error: String) {
    var error = ""
    for candidate in ["python3", "/usr/bin/python3"] {
        let probe = try Subprocess.capture(
            [candidate, "-c", "import " + modules.joined(separator: ", ")], timeout: 60)
        if probe.status == 0 { return (candidate, "") }
        error += "\(candidate): \(probe.standardError)"
    }
    return (nil, error)
}
