// A ZeroMQ socket: bind/connect, multipart send and receive, and poll with a finite timeout.
// Options are in Socket+Options.swift. There is deliberately no blocking receive without a timeout:
// every wait in this module is bounded, as the ZeroMQ guide's reliable patterns require.
import CZeroMQ
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The socket types this project uses.
public enum SocketType: Sendable, CustomStringConvertible {
    /// The coordinator's socket: receives with the sender's routing id as frame 0, sends to the peer named by frame 0.
    case router
    /// A worker's socket: talks to the one ROUTER it connects to, no envelope.
    case dealer
    /// A one-to-one socket, handy for inproc tests.
    case pair
    /// Replies to requests one at a time (the ZAP handler's socket).
    case rep

    var rawValue: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .pair: ZMQ_PAIR
        case .rep: ZMQ_REP
        }
    }

    public var description: String {
        switch self {
        case .router: "ROUTER"
        case .dealer: "DEALER"
        case .pair: "PAIR"
        case .rep: "REP"
        }
    }
}

/// What a socket is ready for, as reported by `poll`.
public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// At least one whole message can be received without blocking.
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// At least one message can be sent without blocking.
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// A ZeroMQ socket.
///
/// Thread ownership: a socket belongs to the thread that uses it; libzmq sockets are not thread-safe,
/// so never touch one socket from two threads (move it only with a full memory barrier, e.g. by
/// handing it over before starting the thread that owns it). The type is deliberately not `Sendable`.
/// Every socket is created with linger 0: closing it drops unsent messages instead of blocking.
public final class Socket {
    public let context: Context
    public let type: SocketType
    private var handle: UnsafeMutableRawPointer?

    init(context: Context, type: SocketType) throws {
        self.context = context
        self.type = type
        handle = try zmqPointerCall("zmq_socket(\(type))") { zmq_socket(context.handle, type.rawValue) }
        try setLinger(milliseconds: 0)
    }

    deinit { close() }

    /// Closes the socket now (it is also closed when released). Later calls throw ENOTSOCK.
    public func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    /// The open handle, or a `ZeroMQError` (ENOTSOCK) naming `call` if the socket was closed.
    func openHandle(_ call: @autoclosure () -> String) throws -> UnsafeMutableRawPointer {
        guard let handle else { throw ZeroMQError(call: call(), code: ENOTSOCK) }
        return handle
    }

    // MARK: Endpoints

    /// Binds to `endpoint` (`tcp://127.0.0.1:*` picks a free port) and returns the actual endpoint.
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        let handle = try openHandle("zmq_bind(\(endpoint))")
        try zmqCall("zmq_bind(\(endpoint))") { zmq_bind(handle, endpoint) }
        return try lastEndpoint()
    }

    /// Connects to `endpoint` (asynchronously: the connection may come up later) and returns the
    /// endpoint as libzmq resolved it.
    @discardableResult
    public func connect(_ endpoint: String) throws -> String {
        let handle = try openHandle("zmq_connect(\(endpoint))")
        try zmqCall("zmq_connect(\(endpoint))") { zmq_connect(handle, endpoint) }
        return try lastEndpoint()
    }

    /// Disconnects from an endpoint given to `connect`.
    public func disconnect(_ endpoint: String) throws {
        let handle = try openHandle("zmq_disconnect(\(endpoint))")
        try zmqCall("zmq_disconnect(\(endpoint))") { zmq_disconnect(handle, endpoint) }
    }

    /// The endpoint of the last bind or connect (ZMQ_LAST_ENDPOINT), e.g. `tcp://127.0.0.1:41235`.
    public func lastEndpoint() throws -> String {
        let bytes = try bytesOption(ZMQ_LAST_ENDPOINT, name: "ZMQ_LAST_ENDPOINT", capacity: 1024)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    // MARK: Messages

    /// Sends `frames` as one multipart message (atomically: all frames or none).
    ///
    /// With `wait` true this blocks while the send queue is full, up to the send timeout if one is set
    /// (`setSendTimeout`); with `wait` false it does not block. Returns false if the message was not
    /// queued because that would block (EAGAIN). A ROUTER with ROUTER_MANDATORY throws a `ZeroMQError`
    /// with `isHostUnreachable` for an unknown peer. For a ROUTER, frame 0 is the peer's routing id.
    @discardableResult
    public func send(_ frames: [[UInt8]], wait: Bool = true) throws -> Bool {
        try send(frames.map(Frame.init), wait: wait)
    }

    /// Sends `frames` as one multipart message, like `send(_: [[UInt8]], wait:)`, without copying
    /// their bytes: the frames stay usable and may be sent again, to this socket or another.
    @discardableResult
    public func send(_ frames: [Frame], wait: Bool = true) throws -> Bool {
        let handle = try openHandle("zmq_msg_send")
        guard !frames.isEmpty else { throw ZeroMQError(call: "zmq_msg_send (no frames)", code: EINVAL) }
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            if !wait { flags |= ZMQ_DONTWAIT }
            var part = zmq_msg_t()
            zmq_msg_init(&part)
            do {
                try zmqCall("zmq_msg_copy") { zmq_msg_copy(&part, &frame.message) }
                try zmqCall("zmq_msg_send(frame \(index) of \(frames.count), \(frame.byteCount) bytes)") {
                    zmq_msg_send(&part, handle, flags)
                }
            } catch let error as ZeroMQError where error.isWouldBlock && index == 0 {
                zmq_msg_close(&part)
                return false  // Only the first frame can block: the rest follow it atomically.
            } catch {
                zmq_msg_close(&part)
                throw error
            }
            // A sent message belongs to libzmq; closing the emptied `part` is a no-op kept for symmetry.
            zmq_msg_close(&part)
        }
        return true
    }

    /// Receives one whole multipart message if one is waiting; returns nil at once otherwise.
    /// For a ROUTER, frame 0 is the sender's routing id.
    public func receive() throws -> [[UInt8]]? {
        try receiveFrames()?.map(\.bytes)
    }

    /// Receives one whole multipart message, like `receive()`, leaving the bytes where libzmq put them.
    public func receiveFrames() throws -> [Frame]? {
        let handle = try openHandle("zmq_msg_recv")
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        do {
            try zmqCall("zmq_msg_recv") { zmq_msg_recv(&message, handle, ZMQ_DONTWAIT) }
        } catch let error as ZeroMQError where error.isWouldBlock {
            return nil
        }
        var frames: [Frame] = []
        while true {
            let more = zmq_msg_more(&message) != 0
            frames.append(Frame(taking: &message))
            guard more else { return frames }
            // The remaining parts of a multipart message have arrived with the first: this cannot block.
            try zmqCall("zmq_msg_recv(more)") { zmq_msg_recv(&message, handle, 0) }
        }
    }

    /// Waits at most `timeoutMilliseconds` for a message and receives it; nil if none came in time.
    public func receive(timeoutMilliseconds: Int) throws -> [[UInt8]]? {
        if let frames = try receive() { return frames }
        guard try poll(.readable, timeoutMilliseconds: timeoutMilliseconds).contains(.readable) else { return nil }
        return try receive()
    }

    // MARK: Poll

    /// Waits at most `timeoutMilliseconds` (negative counts as 0; never infinite) until the socket is
    /// ready for one of `events`; returns the events that are ready (empty on timeout or interrupt).
    public func poll(_ events: PollEvents = .readable, timeoutMilliseconds: Int) throws -> PollEvents {
        try Socket.poll([(self, events)], timeoutMilliseconds: timeoutMilliseconds)[0]
    }

    /// Waits at most `timeoutMilliseconds` until any of the sockets is ready; returns each socket's ready
    /// events, in order (all empty on timeout or when a signal interrupted the wait).
    public static func poll(_ items: [(socket: Socket, events: PollEvents)], timeoutMilliseconds: Int) throws
        -> [PollEvents]
    {
        var pollItems = try items.map { item in
            zmq_pollitem_t(
                socket: try item.socket.openHandle("zmq_poll"), fd: 0, events: item.events.rawValue, revents: 0)
        }
        let timeout = max(0, timeoutMilliseconds)
        do {
            try zmqCall("zmq_poll", retryingInterrupts: false) {
                zmq_poll(&pollItems, Int32(pollItems.count), timeout)
            }
        } catch let error as ZeroMQError where error.code == EINTR {
            return Array(repeating: [], count: items.count)
        }
        return pollItems.map { PollEvents(rawValue: $0.revents) }
    }
}
