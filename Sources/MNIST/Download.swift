// Plain HTTP(S) downloads into memory, with a timeout and progress callbacks.
// Retries and the choice of mirror are the caller's business (Fetch.swift).
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A failed download.
public struct DownloadError: Error, CustomStringConvertible {
    public let url: URL
    public let reason: String
    /// Whether the server answered with a non-200 status (as opposed to not answering at all).
    public let isHTTPStatus: Bool

    init(url: URL, reason: String, isHTTPStatus: Bool = false) {
        self.url = url
        self.reason = reason
        self.isHTTPStatus = isHTTPStatus
    }

    public var description: String { "\(url.absoluteString): \(reason)" }
}

/// Downloads one URL into memory, blocking the calling thread.
public enum Download {
    /// Fetches `url`; `progress(received, expected)` is called as bytes arrive (expected is nil when unknown).
    /// - Parameter timeout: seconds without progress before giving up.
    public static func fetch(
        _ url: URL, timeout: TimeInterval = 30, progress: @escaping (Int64, Int64?) -> Void = { _, _ in }
    ) throws -> Data {
        let delegate = Collector(progress: progress)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = 30 * 60
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: url).resume()
        delegate.done.wait()
        if let error = delegate.error { throw DownloadError(url: url, reason: error.localizedDescription) }
        guard let response = delegate.response as? HTTPURLResponse else {
            throw DownloadError(url: url, reason: "no HTTP response")
        }
        guard response.statusCode == 200 else {
            throw DownloadError(url: url, reason: "HTTP status \(response.statusCode)", isHTTPStatus: true)
        }
        return delegate.data
    }

    private final class Collector: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        let progress: (Int64, Int64?) -> Void
        var data = Data()
        var response: URLResponse?
        var error: Error?

        init(progress: @escaping (Int64, Int64?) -> Void) { self.progress = progress }

        func urlSession(
            _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
            completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
        ) {
            self.response = response
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            self.data.append(data)
            let expected = dataTask.response?.expectedContentLength ?? -1
            progress(Int64(self.data.count), expected > 0 ? expected : nil)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            self.error = error
            done.signal()
        }
    }
}

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
