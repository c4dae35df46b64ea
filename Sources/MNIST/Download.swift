// Plain HTTP(S) downloads into memory, with timeouts, a size limit and progress callbacks, by running
// the `curl` program (Debian's package `curl`) as a child process and reading the body from its
// standard output. Why a child process: Foundation's URLSession would link FoundationNetworking and
// libcurl with its TLS, LDAP and Kerberos libraries into every run of `mnist` (about 10 ms of symbol
// binding at each process start, for a download most runs never make), and an HTTP client of our own
// (AsyncHTTPClient) brought swift-nio-ssl and a second BoringSSL: a release build three times longer
// and a binary 35 MB larger. The program costs nothing until `mnist fetch` needs a file.
// curl reads `https_proxy`, `HTTPS_PROXY`, `http_proxy` and `no_proxy` itself.
// Retries and the choice of mirror are the caller's business (Fetch.swift).
import Foundation

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
    /// The most a download may bring: the largest MNIST file is 47 MB raw.
    public static let defaultLimit = 256 << 20

    /// The longest a whole download may take, however steadily the bytes come.
    static let deadlineMinutes: Int64 = 30

    /// Fetches `url` with curl, following up to five redirects, through the proxy that `https_proxy`
    /// or `http_proxy` names (unless `no_proxy` lists the host); `progress(received, expected)` is
    /// called on the calling thread as bytes arrive (expected is nil when the server does not say).
    /// - Parameters:
    ///   - timeout: seconds to connect, and seconds without a byte before giving up.
    ///   - limit: bytes; a larger body (announced or received) ends the download with an error.
    public static func fetch(
        _ url: URL, timeout: TimeInterval = 30, limit: Int = defaultLimit,
        progress: (Int64, Int64?) -> Void = { _, _ in }
    ) throws -> Data {
        try fetch(
            url, timeout: timeout, limit: limit, environment: ProcessInfo.processInfo.environment,
            progress: progress)
    }

    /// `fetch` with the environment curl runs in (and finds its proxy in) given instead of this
    /// process's: for tests.
    static func fetch(
        _ url: URL, timeout: TimeInterval, limit: Int, environment: [String: String],
        progress: (Int64, Int64?) -> Void
    ) throws -> Data {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), url.host != nil else {
            throw DownloadError(url: url, reason: "not an http or https URL")
        }
        guard let curl = findCurl(environment: environment) else {
            throw DownloadError(
                url: url,
                reason: "the curl program is not installed: install it with `apt-get install curl` "
                    + "or run Cluster/setup.sh")
        }
        let seconds = String(Int(max(1, timeout.rounded(.up))))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: curl)
        process.arguments = [
            "--disable",  // first, or curl reads ~/.curlrc
            "--silent", "--show-error", "--fail", "--globoff",
            "--location", "--max-redirs", "5", "--proto", "=http,https", "--proto-redir", "=http,https",
            // curl's stall check (under 1 byte/s for `timeout`, averaged over about 5 s) is a backstop:
            // `Transfer` notices a stall sooner.
            "--connect-timeout", seconds, "--speed-limit", "1", "--speed-time", seconds,
            "--max-time", String(deadlineMinutes * 60), "--max-filesize", String(limit),
            // Each response's headers, as they arrive, then the final status, go to standard error
            // (the body alone to standard output): `StandardError` reads them.
            "--dump-header", "/dev/stderr", "--write-out", "%{stderr}\n\(StandardError.statusMarker)%{http_code}\n",
            "--url", url.absoluteString,
        ]
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = errors
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw DownloadError(url: url, reason: "cannot run \(curl): \(error.localizedDescription)")
        }
        // Nothing below throws until curl has ended and been reaped: a download stopped here (too
        // large, stalled) kills it first.
        var transfer = Transfer(limit: limit, timeout: timeout)
        let stop = transfer.collect(
            output: output.fileHandleForReading, errors: errors.fileHandleForReading, progress: progress)
        if stop != nil && process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? output.fileHandleForReading.close()
        try? errors.fileHandleForReading.close()
        finished.wait()
        if let stop { throw DownloadError(url: url, reason: stop) }

        let report = transfer.standardError
        let status = report.status ?? 0
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let code = process.terminationReason == .exit ? process.terminationStatus : -1
            if code == 22 && status >= 400 {
                throw DownloadError(url: url, reason: "HTTP status \(status)", isHTTPStatus: true)
            }
            throw DownloadError(
                url: url,
                reason: describe(
                    code, message: report.message, announced: report.expected, limit: limit, timeout: seconds))
        }
        guard status == 200 else {
            throw DownloadError(url: url, reason: "HTTP status \(status)", isHTTPStatus: true)
        }
        return transfer.body
    }

    /// The `curl` found on the environment's PATH.
    private static func findCurl(environment: [String: String]) -> String? {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/curl" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// A readable reason for curl's exit status `code` (-1: killed by a signal we did not send).
    private static func describe(
        _ code: Int32, message: String?, announced: Int64?, limit: Int, timeout: String
    ) -> String {
        switch code {
        case 1: return "a redirect to a scheme other than http or https (\(message ?? "refused"))"
        case 5: return "cannot resolve the proxy's host name"
        case 6: return "cannot resolve the host name"
        case 7: return "cannot connect to the server (refused or unreachable)"
        case 18: return "the server closed the connection before the end of the file"
        case 28:
            if message?.contains("too slow") ?? false { return "no data for longer than the timeout (\(timeout) s)" }
            if message?.contains("Operation timed out") ?? false {
                return "the download took longer than \(deadlineMinutes) minutes"
            }
            return "cannot connect within \(timeout) s"
        case 35: return "the TLS handshake with the server failed"
        case 47: return "more than five redirects"
        case 52: return "the server closed the connection without answering"
        case 56: return "the connection broke off while receiving"
        case 60: return "the server's TLS certificate cannot be verified"
        case 63:
            if let announced, announced > Int64(limit) { return tooLarge("announces \(announced) bytes", limit) }
            return tooLarge("sent more than \(limit) bytes", limit)
        case 77: return "cannot read the CA certificates (is the package ca-certificates installed?)"
        case 97: return "the proxy refused the connection or its handshake failed"
        default:
            let what = code < 0 ? "curl was killed" : "curl failed (exit \(code))"
            return message.map { "\(what): \($0)" } ?? what
        }
    }

    static func tooLarge(_ what: String, _ limit: Int) -> String {
        "the server \(what), more than the \(limit >> 20) MiB a file here may have"
    }

    /// What curl writes while it runs: the body on standard output, counted against the limit and
    /// reported to `progress`; the headers, its error and the final status on standard error.
    private struct Transfer {
        let limit: Int
        let timeout: TimeInterval
        var body = Data()
        var standardError = StandardError()

        /// Reads both streams to their end; returns why the download must stop early (curl must then
        /// be killed): more than `limit` bytes, or no byte for longer than `timeout`. This is the stall
        /// timeout that counts: curl's `--speed-time` averages over about five seconds, so it notices
        /// a stall five seconds late.
        mutating func collect(output: FileHandle, errors: FileHandle, progress: (Int64, Int64?) -> Void) -> String? {
            var streams = [
                pollfd(fd: errors.fileDescriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: output.fileDescriptor, events: Int16(POLLIN), revents: 0),
            ]
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            var lastByte = ContinuousClock.now
            /// Reads what stream `index` holds into `buffer`: the byte count, or 0 at its end.
            func receive(_ index: Int) -> Int {
                while true {
                    let count = buffer.withUnsafeMutableBytes {
                        read(streams[index].fd, $0.baseAddress, $0.count)
                    }
                    if count < 0 && errno == EINTR { continue }
                    if count > 0 {
                        lastByte = .now
                        return count
                    }
                    streams[index].fd = -1  // its end (or an error reading it)
                    return 0
                }
            }
            func isReady(_ index: Int) -> Bool {
                var stream = streams[index]
                return stream.fd >= 0 && poll(&stream, 1, 0) > 0
            }
            while streams.contains(where: { $0.fd >= 0 }) {
                // Until the body begins, connecting (again at each redirect) has a `timeout` of its own.
                let silence = body.isEmpty ? 2 * timeout : timeout
                let left = silence - (ContinuousClock.now - lastByte).seconds
                if left <= 0 { return "no data for longer than the timeout (\(String(format: "%g", timeout)) s)" }
                if poll(&streams, nfds_t(streams.count), Int32(left * 1000) + 1) < 0 {
                    if errno == EINTR { continue }
                    return "cannot read curl's output: \(String(cString: strerror(errno)))"
                }
                // All of standard error first: curl writes a response's headers there before its body,
                // so `expected` is known when the body's first bytes are counted.
                while isReady(0) {
                    let count = receive(0)
                    if count == 0 { break }
                    standardError.consume(buffer[..<count])
                }
                guard streams[1].fd >= 0, streams[1].revents != 0 else { continue }
                let count = receive(1)
                if count == 0 { continue }
                guard body.count + count <= limit else {
                    return Download.tooLarge("sent more than \(limit) bytes", limit)
                }
                body.append(contentsOf: buffer[..<count])
                progress(Int64(body.count), standardError.expected)
            }
            standardError.finish()
            return nil
        }
    }

    /// curl's standard error, line by line: the headers of each response (`--dump-header`), its
    /// error message ("curl: (6) Could not resolve host: …") and, last, the final status.
    struct StandardError {
        static let statusMarker = "curl final status: "
        /// The Content-Length of the latest response, if it gave one above zero.
        var expected: Int64?
        /// The final HTTP status (0 when there was no response).
        var status: Int?
        /// curl's error message, without its "curl: (N) " prefix.
        var message: String?
        private var line = Data()

        mutating func consume(_ bytes: ArraySlice<UInt8>) {
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    take(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                    line.removeAll(keepingCapacity: true)
                } else if line.count < 1 << 16 {
                    line.append(byte)
                }
            }
        }

        mutating func finish() {
            take(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            line.removeAll()
        }

        private mutating func take(_ text: String) {
            if text.hasPrefix("HTTP/") {
                expected = nil
            } else if text.hasPrefix(Self.statusMarker) {
                status = Int(text.dropFirst(Self.statusMarker.count))
            } else if text.hasPrefix("curl: ("), let end = text.firstIndex(of: ")") {
                message = text[text.index(after: end)...].trimmingCharacters(in: .whitespaces)
            } else if text.lowercased().hasPrefix("content-length:") {
                expected = Int64(text.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
                    .flatMap { $0 > 0 ? $0 : nil }
            }
        }
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
