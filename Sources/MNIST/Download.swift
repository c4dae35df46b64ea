// Plain HTTP(S) downloads into memory, with timeouts, a size limit and progress callbacks, through
// AsyncHTTPClient (SwiftNIO, which the dashboard's server links anyway). Foundation's URLSession would
// link FoundationNetworking, libcurl and its TLS, LDAP and Kerberos libraries into every run of `mnist`:
// about 10 ms of symbol binding at each process start, for a download most runs never make.
// Retries and the choice of mirror are the caller's business (Fetch.swift).
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

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

    /// Fetches `url`, following up to five redirects, through the proxy that `https_proxy` or
    /// `http_proxy` names (unless `no_proxy` lists the host); `progress(received, expected)` is called
    /// as bytes arrive (expected is nil when unknown).
    /// - Parameters:
    ///   - timeout: seconds to connect, and seconds without a byte before giving up.
    ///   - limit: bytes; a larger body (announced or received) ends the download with an error.
    public static func fetch(
        _ url: URL, timeout: TimeInterval = 30, limit: Int = defaultLimit,
        progress: @escaping (Int64, Int64?) -> Void = { _, _ in }
    ) throws -> Data {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), let host = url.host else {
            throw DownloadError(url: url, reason: "not an http or https URL")
        }
        var configuration = HTTPClient.Configuration()
        let seconds = TimeAmount.milliseconds(Int64(max(1, timeout * 1000)))
        configuration.timeout = .init(connect: seconds, read: seconds)
        configuration.redirectConfiguration = .follow(max: 5, allowCycles: false)
        configuration.proxy = proxy(scheme: scheme, host: host)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { try? client.syncShutdown() }
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: url.absoluteString)
        } catch {
            throw DownloadError(url: url, reason: "\(error)")
        }
        let collector = Collector(limit: limit, progress: progress)
        do {
            return try client.execute(
                request: request, delegate: collector, deadline: .now() + .minutes(deadlineMinutes)
            ).wait()
        } catch let error as Collector.Refusal {
            throw DownloadError(url: url, reason: error.reason, isHTTPStatus: error.isHTTPStatus)
        } catch {
            throw DownloadError(url: url, reason: describe(error))
        }
    }

    /// The proxy the environment names for `scheme`, as curl reads it: `https_proxy` (or `HTTPS_PROXY`)
    /// for https, `http_proxy` for http, with the user and password it may hold; none when `no_proxy`
    /// (or `NO_PROXY`) is `*` or lists `host` or a domain it ends with.
    static func proxy(
        scheme: String, host: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> HTTPClient.Configuration.Proxy? {
        let names = scheme == "https" ? ["https_proxy", "HTTPS_PROXY"] : ["http_proxy"]
        guard let value = names.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else { return nil }
        let exclusions = (environment["no_proxy"] ?? environment["NO_PROXY"] ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        let target = host.lowercased()
        for exclusion in exclusions {
            let domain = exclusion.hasPrefix(".") ? String(exclusion.dropFirst()) : exclusion
            if exclusion == "*" || target == domain || target.hasSuffix("." + domain) { return nil }
        }
        guard let proxy = URL(string: value.contains("://") ? value : "http://" + value), let proxyHost = proxy.host
        else { return nil }
        // Percent-escapes in the user and password (a password holding "@" or ":") are undone, as curl does.
        let decoded = { (part: String?) in part.map { $0.removingPercentEncoding ?? $0 } }
        let credentials = decoded(proxy.user).map {
            HTTPClient.Authorization.basic(username: $0, password: decoded(proxy.password) ?? "")
        }
        return .server(host: proxyHost, port: proxy.port ?? 80, authorization: credentials)
    }

    /// A readable reason for what AsyncHTTPClient or NIO threw.
    private static func describe(_ error: Error) -> String {
        let reasons: [(HTTPClientError, String)] = [
            (.readTimeout, "no data for longer than the timeout"),
            (.connectTimeout, "the connection timed out"),
            (.deadlineExceeded, "the download took longer than \(deadlineMinutes) minutes"),
            (.remoteConnectionClosed, "the server closed the connection before the end"),
            (.redirectLimitReached, "more than five redirects"),
            (.redirectCycleDetected, "the redirects go round in a circle"),
        ]
        guard let error = error as? HTTPClientError, let reason = reasons.first(where: { $0.0 == error }) else {
            return String(describing: error)
        }
        return reason.1
    }

    /// Collects the body, refusing a status other than 200 and a body over `limit`. AsyncHTTPClient
    /// calls a delegate on the request's event loop, one call at a time, while `fetch` waits, so
    /// neither `data` nor the caller's `progress` is ever used from two threads at once.
    private final class Collector: HTTPClientResponseDelegate, @unchecked Sendable {
        typealias Response = Data

        struct Refusal: Error {
            let reason: String
            let isHTTPStatus: Bool
        }

        let limit: Int
        let progress: (Int64, Int64?) -> Void
        var data = Data()
        var expected: Int64?

        init(limit: Int, progress: @escaping (Int64, Int64?) -> Void) {
            self.limit = limit
            self.progress = progress
        }

        func didReceiveHead(task: HTTPClient.Task<Data>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
            guard head.status == .ok else {
                return task.eventLoop.makeFailedFuture(
                    Refusal(reason: "HTTP status \(head.status.code)", isHTTPStatus: true))
            }
            expected = head.headers.first(name: "content-length").flatMap { Int64($0) }.flatMap { $0 > 0 ? $0 : nil }
            if let expected, expected > Int64(limit) {
                return task.eventLoop.makeFailedFuture(tooLarge("announces \(expected) bytes"))
            }
            return task.eventLoop.makeSucceededVoidFuture()
        }

        func didReceiveBodyPart(task: HTTPClient.Task<Data>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
            guard data.count + buffer.readableBytes <= limit else {
                return task.eventLoop.makeFailedFuture(tooLarge("sent more than \(limit) bytes"))
            }
            data.append(contentsOf: buffer.readableBytesView)
            progress(Int64(data.count), expected)
            return task.eventLoop.makeSucceededVoidFuture()
        }

        func didFinishRequest(task: HTTPClient.Task<Data>) throws -> Data { data }

        private func tooLarge(_ what: String) -> Refusal {
            Refusal(
                reason: "the server \(what), more than the \(limit >> 20) MiB a file here may have", isHTTPStatus: false
            )
        }
    }
}
