// The libzmq context and library-wide facts about the linked libzmq.
// Sockets live in Socket.swift, options in Socket+Options.swift, CURVE keys in Curve.swift; every
// zmq_* call goes through `zmqCall` in ZeroMQError.swift. Nothing here knows the training protocol.
import CZeroMQ
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Facts about the libzmq this binary is linked against.
public enum ZeroMQLibrary {
    /// The (major, minor, patch) version of libzmq.
    public static var version: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether libzmq was built with a capability such as "curve" or "ipc".
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}

/// A libzmq context: the owner of I/O threads and of the `inproc://` namespace.
///
/// Thread safety: a context may be shared between threads (libzmq contexts are thread-safe); the
/// sockets made from it may not. Every socket keeps its context alive, so the context is terminated
/// only after its last socket is closed, and because every socket lingers 0 ms by default the
/// termination never waits for unsent messages.
// @unchecked Sendable: the handle is immutable and libzmq contexts are thread-safe (see above).
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context with libzmq's defaults (one I/O thread).
    public init() throws {
        _ = Self.seedRoutingIDs
        handle = try zmqPointerCall("zmq_ctx_new") { zmq_ctx_new() }
    }

    /// A ROUTER names each peer that gives no routing id of its own with a number that starts at a
    /// value of rand(), which libzmq never seeds: the first is always 0x6b8b4567 on glibc. A peer that
    /// chose that id for itself would make the next anonymous peer's id a duplicate, and libzmq aborts
    /// the process on a duplicate. Seeding rand() once from the system's randomness makes the number
    /// unguessable (32 bits); authenticated sockets (CURVE) never let an unknown peer choose an id.
    private static let seedRoutingIDs: Void = srand(UInt32.random(in: 0...UInt32.max))

    deinit {
        while zmq_ctx_term(handle) == -1 && zmq_errno() == EINTR {}
    }

    /// Makes a socket of `type`, owned by the calling thread (see `Socket`).
    public func makeSocket(_ type: SocketType) throws -> Socket {
        try Socket(context: self, type: type)
    }
}
