// Running a child program to its end with a time limit, capturing its output: `mnist fetch` runs pip
// and the pickle converter with it. Long-lived children (the workers of `mnist train --workers`) are
// LocalCluster's business, not this file's.
import Foundation

/// Runs a program to completion with a time limit, capturing its output.
public enum Subprocess {
    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let reason: String
        public var description: String { "`\(command)` \(reason)" }
    }

    /// Runs `arguments` (the first found on PATH), feeding `input` on stdin; returns stdout.
    /// Throws when it cannot start, exceeds `timeout` seconds (it is then killed) or exits non-zero.
    /// - Parameter showsOutput: let the program write to this process's standard error (both of its
    ///   streams), for example a progress bar on a terminal; it then returns "".
    @discardableResult
    public static func run(
        _ arguments: [String], input: String? = nil, timeout: TimeInterval, showsOutput: Bool = false
    ) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = showsOutput ? FileHandle.standardError : stdout
        process.standardError = showsOutput ? FileHandle.standardError : stderr
        process.standardInput = stdin
        let command = arguments.prefix(3).joined(separator: " ")
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw Failure(command: command, reason: "could not start: \(error.localizedDescription)")
        }
        // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
        let outputs = Outputs()
        let group = DispatchGroup()
        for (index, pipe) in [stdout, stderr].enumerated() where !showsOutput {
            DispatchQueue.global().async(group: group) {
                outputs.set(index, pipe.fileHandleForReading.readDataToEndOfFile())
            }
        }
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            finished.wait()
            group.wait()
            throw Failure(command: command, reason: "took longer than \(Int(timeout)) s and was stopped")
        }
        group.wait()
        let out = String(decoding: outputs.get(0), as: UTF8.self)
        let err = String(decoding: outputs.get(1), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            let lastLines = err.split(separator: "\n").suffix(3).joined(separator: " / ")
            throw Failure(command: command, reason: "failed (exit \(process.terminationStatus)): \(lastLines)")
        }
        return out
    }

    private final class Outputs: @unchecked Sendable {
        private let lock = NSLock()
        private var values = [Data(), Data()]
        func set(_ index: Int, _ data: Data) { lock.lock(); values[index] = data; lock.unlock() }
        func get(_ index: Int) -> Data { lock.lock(); defer { lock.unlock() }; return values[index] }
    }
}
