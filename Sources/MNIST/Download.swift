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

    // @unchecked Sendable: URLSession calls the delegate on its serial delegate queue, one call at a
    // time; the caller reads `data`, `response` and `error` only after `done` was signalled.
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
