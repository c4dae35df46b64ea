// A ZAP handler (ZeroMQ RFC 27): the context's authenticator, asked by libzmq during every CURVE
// handshake whether a client may connect. A refused client never completes the handshake: its socket
// sees no peer, and no message of it or to it ever passes. The decision is the caller's closure.
import CZeroMQ
import Dispatch
import Foundation

/// One authentication request, as libzmq hands it over.
public struct ZAPRequest: Sendable {
    /// The server socket's ZAP domain.
    public var domain: String
    /// The client's IP address (without port).
    public var address: String
    /// "NULL", "PLAIN" or "CURVE".
    public var mechanism: String
    /// For CURVE, the client's public key in Z85.
    public var clientKey: String?
}

/// What the handler answers.
public enum ZAPDecision: Sendable, Equatable {
    /// Let the client in; `userID` is attached to its messages (ZMQ's "User-Id" property).
    case allow(userID: String)
    /// Refuse it (ZAP status 400) with a reason libzmq reports to the client's monitor.
    case deny(reason: String)
}

/// Serves ZAP requests for one context on its own thread until `stop()` (or release).
///
/// Start it before binding a CURVE server socket of the same context, stop it after that socket is
/// closed. `decide` runs on the handler's thread, one request at a time.
// @unchecked Sendable: the socket is used on the handler's queue only; `stopping` is read and
// written under `lock`.
public final class Authenticator: @unchecked Sendable {
    /// The ZAP domain servers of this project use.
    public static let defaultDomain = "mnist"
    /// libzmq's fixed endpoint for the ZAP handler of a context.
    static let endpoint = "inproc://zeromq.zap.01"

    private let lock = NSLock()
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private var isRunning = true

    /// Binds the handler in `context` and starts serving. Throws if another handler is bound there.
    public init(context: Context, decide: @escaping @Sendable (ZAPRequest) -> ZAPDecision) throws {
        let started = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var startError: Error?
        let queue = DispatchQueue(label: "mnist.zap")
        queue.async { [self] in
            let socket: Socket
            do {
                socket = try context.makeSocket(.rep)
                try socket.bind(Self.endpoint)
            } catch {
                startError = error
                started.signal()
                finished.signal()
                return
            }
            started.signal()
            serve(socket, decide: decide)
            socket.close()
            finished.signal()
        }
        started.wait()
        if let startError {
            isRunning = false
            throw startError
        }
    }

    deinit { stop() }

    /// Stops serving and closes the handler's socket (waits up to a poll interval). Idempotent.
    public func stop() {
        lock.lock()
        let wasRunning = isRunning && !stopping
        stopping = true
        lock.unlock()
        if wasRunning { finished.wait() }
    }

    private var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func serve(_ socket: Socket, decide: (ZAPRequest) -> ZAPDecision) {
        while !shouldStop {
            guard let frames = try? socket.receive(timeoutMilliseconds: 100) else { continue }
            // Request: version, request id, domain, address, routing id, mechanism, credentials...
            let text = { (index: Int) in String(decoding: frames[index], as: UTF8.self) }
            let requestID = frames.count > 1 ? frames[1] : []
            let decision: ZAPDecision
            if frames.count < 6 || text(0) != "1.0" {  // REP owes every request a reply, even this one.
                decision = .deny(reason: "unsupported ZAP version")
            } else {
                let mechanism = text(5)
                let request = ZAPRequest(
                    domain: text(2), address: text(3), mechanism: mechanism,
                    clientKey: mechanism == "CURVE" && frames.count > 6 ? CurveKey.text(frames[6]) : nil)
                decision = decide(request)
            }
            let reply: [[UInt8]]
            switch decision {
            case .allow(let userID):
                reply = [Array("1.0".utf8), requestID, Array("200".utf8), Array("OK".utf8), Array(userID.utf8), []]
            case .deny(let reason):
                reply = [Array("1.0".utf8), requestID, Array("400".utf8), Array(reason.utf8), [], []]
            }
            _ = try? socket.send(reply, wait: false)
        }
    }
}
