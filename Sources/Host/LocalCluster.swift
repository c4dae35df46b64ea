// Worker child processes on this machine for a one-node "cluster": start N of them (any executable,
// typically the `mnist` binary itself with `worker --connect ENDPOINT`), forward their stderr lines
// prefixed with `[worker i]`, and stop them: SIGTERM, then SIGKILL after a grace period. Also the
// SIGINT/SIGTERM watch a launcher installs so Ctrl-C stops the coordinator and the children.
// Children cannot be tied to the parent's death on Linux through Foundation.Process (no
// PR_SET_PDEATHSIG), so a worker whose parent was killed outright exits by the protocol's liveness
// window instead: the coordinator goes silent and the worker gives up after its reconnects.
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// N worker processes started and stopped together.
///
/// Thread safety: all methods may be called from any thread; `onLine` is called on a background queue,
/// one complete line at a time (without the newline), already prefixed with `[worker i] `.
// @unchecked Sendable: the process list and the exit statuses are read and written under `lock`.
public final class LocalCluster: @unchecked Sendable {
    public let executable: URL
    public let workerCount: Int

    private let arguments: (Int) -> [String]
    private let environment: [String: String]?
    private let onLine: @Sendable (String) -> Void
    private let lock = NSLock()
    private var processes: [Process] = []
    private var pipes: [Pipe] = []
    private let exited = DispatchGroup()

    /// - Parameters:
    ///   - arguments: the argument list of worker `i` (0-based), e.g. `["worker", "--connect", endpoint]`.
    ///   - environment: the children's environment (nil: inherit this process's).
    ///   - onLine: receives each stderr line of each child, prefixed; by default written to our stderr.
    public init(
        executable: URL, workerCount: Int, arguments: @escaping (Int) -> [String],
        environment: [String: String]? = nil,
        onLine: @escaping @Sendable (String) -> Void = LocalCluster.writeToStandardError
    ) {
        self.executable = executable
        self.workerCount = workerCount
        self.arguments = arguments
        self.environment = environment
        self.onLine = onLine
    }

    /// Writes `line` and a newline to this process's stderr.
    public static func writeToStandardError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Starts every worker. If one cannot be started, those already started are terminated and the
    /// error (naming the executable and worker) is thrown.
    public func start() throws {
        for index in 0..<workerCount {
            do {
                try startWorker(index)
            } catch {
                terminate(gracePeriod: 1)
                throw LocalClusterError(
                    description: "cannot start worker \(index) (\(executable.path)): \(error)")
            }
        }
    }

    private func startWorker(_ index: Int) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments(index)
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardError = pipe
        let prefix = "[worker \(index)] "
        let onLine = self.onLine
        let reading = pipe.fileHandleForReading
        // A plain thread per child blocks on the pipe until EOF (readabilityHandler can miss the last,
        // unterminated line on Linux).
        let reader = Thread {
            let lines = LineSplitter()
            while true {
                let data = reading.availableData
                if data.isEmpty { break }
                lines.append(data).forEach { onLine(prefix + $0) }
            }
            lines.finish().forEach { onLine(prefix + $0) }
        }
        reader.name = "worker \(index) stderr"
        let exited = self.exited
        exited.enter()
        process.terminationHandler = { _ in exited.leave() }
        do {
            try process.run()
        } catch {
            exited.leave()
            throw error
        }
        reader.start()
        lock.lock()
        processes.append(process)
        pipes.append(pipe)
        lock.unlock()
    }

    private var started: [Process] {
        lock.lock()
        defer { lock.unlock() }
        return processes
    }

    /// How many started workers are still running.
    public var runningCount: Int { started.filter(\.isRunning).count }

    /// Waits until every started worker has exited; returns their exit statuses in worker order
    /// (a signal's number for a worker killed by a signal), or nil if some still run after `timeout`.
    public func waitForExit(timeout seconds: Double) -> [Int32]? {
        guard exited.wait(timeout: .now() + seconds) == .success else { return nil }
        return started.map(\.terminationStatus)
    }

    /// Stops every running worker: SIGTERM, then SIGKILL to those still running after `gracePeriod`
    /// seconds. Returns when all have exited (or after a further second, if one cannot be reaped).
    public func terminate(gracePeriod: Double = 3) {
        let running = started.filter(\.isRunning)
        guard !running.isEmpty else { return }
        for process in running { kill(process.processIdentifier, SIGTERM) }
        if waitForExit(timeout: gracePeriod) != nil { return }
        for process in started where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = waitForExit(timeout: 1)
    }

    deinit {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// A failure to start the workers.
public struct LocalClusterError: Error, CustomStringConvertible {
    public var description: String
}

/// Splits a byte stream into UTF-8 lines (invalid bytes are repaired, never fatal).
// @unchecked Sendable: `buffer` is read and written under `lock`.
private final class LineSplitter: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()

    func append(_ data: Data) -> [String] {
        lock.lock()
        defer { lock.unlock() }
        buffer.append(data)
        var lines: [String] = []
        while let newline = buffer.firstIndex(of: 0x0A) {
            lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
            buffer = Data(buffer[buffer.index(after: newline)...])
        }
        return lines
    }

    func finish() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        defer { buffer = Data() }
        return buffer.isEmpty ? [] : [String(decoding: buffer, as: UTF8.self)]
    }
}

/// Watches SIGINT and SIGTERM and calls a handler on a queue instead of dying, so a launcher can stop
/// the coordinator (`requestStop`) and then `terminate()` its children. The default dispositions are
/// restored when the watch is cancelled or released.
// @unchecked Sendable: the dispatch sources are immutable and the cancelled flag is under `lock`.
public final class SignalWatch: @unchecked Sendable {
    private let signals: [Int32]
    private let sources: [DispatchSourceSignal]
    private let lock = NSLock()
    private var isCancelled = false

    /// Starts watching `signals` (default SIGINT and SIGTERM); `handler` gets the signal number each time.
    /// Returns once the watch is active. `queue` must not be the caller's own serial queue.
    public init(
        signals: [Int32] = [SIGINT, SIGTERM], queue: DispatchQueue = .global(),
        handler: @escaping @Sendable (Int32) -> Void
    ) {
        self.signals = signals
        sources = signals.map { signalNumber in
            signal(signalNumber, SIG_IGN)  // The dispatch source sees the signal; the default action must not.
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            let registered = DispatchSemaphore(value: 0)
            source.setRegistrationHandler { registered.signal() }
            source.setEventHandler { handler(signalNumber) }
            source.resume()
            // Registration is asynchronous; until it completes a signal would meet SIG_IGN and be lost.
            _ = registered.wait(timeout: .now() + 2)
            return source
        }
    }

    /// Stops watching and restores the default dispositions.
    public func cancel() {
        lock.lock()
        defer { lock.unlock() }
        guard !isCancelled else { return }
        isCancelled = true
        sources.forEach { $0.cancel() }
        signals.forEach { signal($0, SIG_DFL) }
    }

    deinit { cancel() }
}

/// A stop request that any thread (a signal handler's queue, a test) may set and a working thread reads.
// @unchecked Sendable: `storedReason` is read and written under `lock`.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var storedReason: String?

    public init() {}

    /// Records the first reason; later requests keep the first one.
    public func request(_ reason: String) {
        lock.lock()
        defer { lock.unlock() }
        if storedReason == nil { storedReason = reason }
    }

    /// The reason, if a stop was requested.
    public var reason: String? {
        lock.lock()
        defer { lock.unlock() }
        return storedReason
    }
}
