// The one place where libzmq failures become Swift errors: every zmq_* call in this module goes
// through `zmqCall` or `zmqPointerCall`, which retry an interrupted call (EINTR) and otherwise throw a
// `ZeroMQError` naming the call and libzmq's own text for errno.
import CZeroMQ
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A failed libzmq call: which call (with its argument, such as the endpoint), errno and `zmq_strerror`.
public struct ZeroMQError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed, for example `zmq_bind(tcp://127.0.0.1:99999)`.
    public var call: String
    /// The errno value libzmq reported.
    public var code: Int32
    /// `zmq_strerror(code)`.
    public var message: String

    public init(call: String, code: Int32) {
        self.call = call
        self.code = code
        self.message = String(cString: zmq_strerror(code))
    }

    public var description: String { "\(call) failed: \(message) (errno \(code))" }

    /// The call would have blocked (EAGAIN): nothing to receive, a full queue, or a send timeout.
    public var isWouldBlock: Bool { code == EAGAIN }
    /// A ROUTER_MANDATORY socket was asked to send to a peer it does not know (EHOSTUNREACH).
    public var isHostUnreachable: Bool { code == EHOSTUNREACH }
}

/// Runs one zmq_* call that returns -1 on failure; retries on EINTR; throws a `ZeroMQError` naming it.
@discardableResult
func zmqCall(
    _ call: @autoclosure () -> String, retryingInterrupts: Bool = true,
    _ body: () -> Int32
) throws -> Int32 {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = zmq_errno()
        if code == EINTR && retryingInterrupts { continue }
        throw ZeroMQError(call: call(), code: code)
    }
}

/// Runs one zmq_* call that returns NULL on failure; throws a `ZeroMQError` naming it.
func zmqPointerCall(
    _ call: @autoclosure () -> String,
    _ body: () -> UnsafeMutableRawPointer?
) throws -> UnsafeMutableRawPointer {
    guard let pointer = body() else { throw ZeroMQError(call: call(), code: zmq_errno()) }
    return pointer
}
