// Running a child program to its end with a time limit, capturing its output: `mnist fetch` runs pip
// and the pickle converter with `run`, and the tests run the `mnist` binary with `capture`, which hands
// back the exit status and both streams instead of throwing. Long-lived children (the workers of
// `mnist train --workers`) are LocalCluster's business, not this file's.
import Foundation

/// Runs a program to completion with a time limit, capturing its output.
public enum Subprocess {
    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let reason: String
        public var description: String { "`\(command)` \(reason)" }

        public init(command: String, reason: String) {
            self.command = command
            self.reason = reason
        }
    }

    /// How a program ended and what it wrote.
    public struct Outcome: Sendable {
        /// The exit status, or the number of the signal that ended it.
        public let status: Int32
        public let standardOutput: String
        public let standardError: String
        /// Whether it ran past its timeout and was stopped.
        public let didTimeOut: Bool
    }

    /// Seconds a program has to end after SIGTERM before it is killed with SIGKILL.
    private static let terminationGracePeriod: TimeInterval = 5

    /// Runs `arguments` (the first found on PATH), feeding `input` on stdin; returns stdout.
    /// Throws when it cannot start, exceeds `timeout` seconds (it is then stopped) or exits non-zero.
    /// - Parameters:
    ///   - environment: variables added to (or replacing those of) this process's environment.
    ///   - showsOutput: let the program write to this process's standard error (both of its
    ///     streams), for example a progress bar on a terminal; it then returns "".
    @discardableResult
    public static func run(
        _ arguments: [String], input: String? = nil, environment: [String: String] = [:], timeout: TimeInterval,
        showsOutput: Bool = false
    ) throws -> String {
        let outcome = try execute(
            arguments, input: input, environment: environment, timeout: timeout, showsOutput: showsOutput)
        let command = commandName(arguments)
        if outcome.didTimeOut {
            throw Failure(command: command, reason: "took longer than \(Int(timeout)) s and was stopped")
        }
        guard outcome.status == 0 else {
            let lastLines = outcome.standardError.split(separator: "\n").suffix(3).joined(separator: " / ")
            throw Failure(command: command, reason: "failed (exit \(outcome.status)): \(lastLines)")
        }
        return outcome.standardOutput
    }

    /// Runs `arguments` (the first found on PATH) like `run`, but hands back the exit status and both
    /// output streams whatever the status: for callers that judge the outcome themselves, such as tests
    /// of a command's failures. A program still running after `timeout` seconds gets SIGTERM, then
    /// SIGKILL after a grace period; the outcome then says `didTimeOut` and holds what it wrote.
    /// Throws only when the program cannot start.
    /// - Parameter environment: variables added to (or replacing those of) this process's environment.
    public static func capture(
        _ arguments: [String], input: String? = nil, environment: [String: String] = [:], timeout: TimeInterval
    ) throws -> Outcome {
        try execute(arguments, input: input, environment: environment, timeout: timeout, showsOutput: false)
    }

    private static func commandName(_ arguments: [String]) -> String { arguments.prefix(3).joined(separator: " ") }

    private static func execute(
        _ arguments: [String], input: String?, environment: [String: String], timeout: TimeInterval,
        showsOutput: Bool
    ) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = showsOutput ? FileHandle.standardError : stdout
        process.standardError = showsOutput ? FileHandle.standardError : stderr
        process.standardInput = stdin
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw Failure(command: commandName(arguments), reason: "could not start: \(error.localizedDescription)")
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
        let didTimeOut = finished.wait(timeout: .now() + timeout) == .timedOut
        if didTimeOut {
            process.terminate()
            if finished.wait(timeout: .now() + terminationGracePeriod) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                finished.wait()
            }
        }
        group.wait()
        return Outcome(
            status: process.terminationStatus, standardOutput: String(decoding: outputs.get(0), as: UTF8.self),
            standardError: String(decoding: outputs.get(1), as: UTF8.self), didTimeOut: didTimeOut)
    }

    // @unchecked Sendable: `values` is read and written under `lock`.
    private final class Outputs: @unchecked Sendable {
        private let lock = NSLock()
        private var values = [Data(), Data()]
        func set(_ index: Int, _ data: Data) { lock.lock(); values[index] = data; lock.unlock() }
        func get(_ index: Int) -> Data { lock.lock(); defer { lock.unlock() }; return values[index] }
    }
}
