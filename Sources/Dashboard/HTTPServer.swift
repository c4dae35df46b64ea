// A Hummingbird application run in the background of a synchronous program: `start` returns once the
// socket is bound (with the port, so port 0 works), `stop` shuts it down gracefully, `wait` blocks until
// it has stopped. Training keeps its threads; the server lives on SwiftNIO's event loops and never
// holds a lock a training thread waits on.
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// Where an HTTP server listens: `HOST:PORT` (`[::1]:PORT` for IPv6), or a bare `PORT` on 127.0.0.1.
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `PORT`; nil when it is none of those.
    public init?(parsing text: String) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, !host.contains("[") else { return nil }
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.init(host: host, port: port)
    }

    /// Whether only this machine can reach the address (a loopback address or `localhost`).
    public var isLoopback: Bool { host == "localhost" || host == "::1" || host.hasPrefix("127.") }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The URL of the server's root page.
    public var url: String { "http://\(description)/" }
}

/// A running HTTP server.
public final class HTTPServer: Sendable {
    /// The address it listens on, with the port the system chose for port 0.
    public let address: HTTPAddress
    private let group: ServiceGroup
    private let run: RunState

    /// What the background task reports: bound (with the port), and finished (with any error).
    private final class RunState: Sendable {
        let bound = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let port = Mutex<Int?>(nil)
        let failure = Mutex<String?>(nil)
    }

    private init(address: HTTPAddress, group: ServiceGroup, run: RunState) {
        self.address = address
        self.group = group
        self.run = run
    }

    /// Binds `address` and serves `router` on a background task. Returns once the socket is bound;
    /// throws `HTTPServerError` when it cannot be (address in use, unknown host, no permission).
    /// `handleSignals`: SIGINT and SIGTERM stop the server gracefully (for `mnist serve`); without it
    /// the program keeps its own signal handling and calls `stop()`.
    public static func start<Context: RequestContext>(
        router: Router<Context>, address: HTTPAddress, handleSignals: Bool = false, logger: Logger
    ) throws -> HTTPServer where Context.Source == ApplicationRequestContextSource {
        let run = RunState()
        let application = Application(
            router: router,
            // Idle connections close after 30 s; at most 256 are open at once (more wait to be accepted).
            server: .http1(configuration: .init(idleTimeout: .seconds(30))),
            configuration: .init(
                address: .hostname(address.host, port: address.port), serverName: "mnist",
                availableConnectionsDelegate: .maximum(256, logger: logger)),
            onServerRunning: { channel in
                run.port.withLock { $0 = channel.localAddress?.port }
                run.bound.signal()
            },
            logger: logger)
        let group = ServiceGroup(
            services: [application], gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger)
        Task.detached {
            do {
                try await group.run()
            } catch {
                run.failure.withLock { $0 = "\(error)" }
            }
            run.bound.signal()
            run.finished.signal()
        }
        run.bound.wait()
        guard let port = run.port.withLock({ $0 }) else {
            run.finished.wait()
            let reason = run.failure.withLock { $0 } ?? "the server stopped before it was bound"
            throw HTTPServerError(address: address, reason: reason)
        }
        return HTTPServer(address: HTTPAddress(host: address.host, port: port), group: group, run: run)
    }

    /// Stops accepting connections, lets requests in progress finish, and returns when it has stopped.
    public func stop() {
        let group = self.group
        Task.detached { await group.triggerGracefulShutdown() }
        wait()
    }

    /// Blocks until the server has stopped (after `stop()`, or a signal with `handleSignals`).
    public func wait() {
        run.finished.wait()
        run.finished.signal()
    }
}

/// The server could not start.
public struct HTTPServerError: Error, CustomStringConvertible {
    public let address: HTTPAddress
    public let reason: String

    public var description: String { "cannot serve HTTP on \(address): \(reason)" }
}
