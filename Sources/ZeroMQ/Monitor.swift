// Socket monitoring (zmq_socket_monitor): libzmq reports connection events of a socket on an inproc
// PAIR socket. The worker uses it to tell a refused key from a coordinator that is not there.
import CZeroMQ

/// The connection events this project watches.
public struct SocketEventKinds: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let connected = SocketEventKinds(rawValue: UInt16(ZMQ_EVENT_CONNECTED))
    public static let disconnected = SocketEventKinds(rawValue: UInt16(ZMQ_EVENT_DISCONNECTED))
    public static let handshakeSucceeded = SocketEventKinds(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_SUCCEEDED))
    /// The handshake failed for a reason libzmq does not detail (a CURVE client with the wrong server key, say).
    public static let handshakeFailedNoDetail = SocketEventKinds(
        rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
    /// The peers' handshakes did not match; `value` is a ZMQ_PROTOCOL_ERROR_* code.
    public static let handshakeFailedProtocol = SocketEventKinds(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
    /// The server's authenticator refused this client; `value` is the ZAP status code (400).
    public static let handshakeFailedAuthentication = SocketEventKinds(
        rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))

    public static let handshakeFailures: SocketEventKinds = [
        .handshakeFailedNoDetail, .handshakeFailedProtocol, .handshakeFailedAuthentication,
    ]
}

/// One event of a monitored socket.
public struct SocketEvent: Sendable, Equatable {
    public var kind: SocketEventKinds
    /// The event's value: a ZAP status, a protocol error code, a file descriptor, depending on `kind`.
    public var value: UInt32
    /// The endpoint the event concerns.
    public var endpoint: String

    /// A protocol error that says the two sides use different security mechanisms (CURVE and NULL).
    public var isMechanismMismatch: Bool {
        kind == .handshakeFailedProtocol && value == UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    }
}

/// Receives the events of a monitored socket. Belongs to the thread that owns the monitored socket.
public final class SocketMonitor {
    /// The PAIR socket the events arrive on (poll it for `.readable`).
    public let socket: Socket

    init(socket: Socket) { self.socket = socket }

    /// The next event if one is waiting, else nil.
    public func next() throws -> SocketEvent? {
        guard let frames = try socket.receive() else { return nil }
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let head = frames[0]
        let kind = UInt16(head[0]) | UInt16(head[1]) << 8
        let value = UInt32(head[2]) | UInt32(head[3]) << 8 | UInt32(head[4]) << 16 | UInt32(head[5]) << 24
        return SocketEvent(
            kind: SocketEventKinds(rawValue: kind), value: value, endpoint: String(decoding: frames[1], as: UTF8.self))
    }
}

extension Socket {
    /// Starts reporting `events` of this socket; read them from the returned monitor.
    public func monitor(_ events: SocketEventKinds) throws -> SocketMonitor {
        let handle = try openHandle("zmq_socket_monitor")
        let address = "inproc://mnist-monitor-\(UInt64.random(in: 0...UInt64.max))"
        try zmqCall("zmq_socket_monitor(\(address))") { zmq_socket_monitor(handle, address, Int32(events.rawValue)) }
        let receiver = try context.makeSocket(.pair)
        try receiver.connect(address)
        return SocketMonitor(socket: receiver)
    }
}
